package emulator

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rescalefs/rescalefs/remote/cbc"
)

// s3Client gets storage credentials from the API and builds an AWS SDK client on them.
func s3Client(t *testing.T, h *harness) *s3.Client {
	t.Helper()
	resp, b := h.do(http.MethodPost, "/api/v3/credentials/", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("credentials: %d %s", resp.StatusCode, b)
	}
	var c credentialsJSON
	json.Unmarshal(b, &c)
	return s3.New(s3.Options{
		Region:       StorageRegion,
		BaseEndpoint: aws.String(c.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, c.SessionToken),
		HTTPClient:   h.srv.Client(),
	})
}

func TestS3RangedGetDecryptsWithRegisteredKey(t *testing.T) {
	h := newHarness(t, Options{})
	j := mustAddJob(t, h.e, JobSpec{Files: []FileSpec{{RelativePath: "res/field.bin", Size: 100_003}}})
	var f fileJSON
	h.getJSON("/api/v2/files/"+j.Files[0].ID+"/", &f)
	plain := plaintext(t, h.e, f.ID)
	cl := s3Client(t, h)
	key, _ := base64.StdEncoding.DecodeString(f.EncodedEncryptionKey)
	for _, r := range [][2]int64{{0, 1}, {15, 2}, {16, 16}, {50_000, 12_345}, {100_000, 3}, {0, 100_003}} {
		off, n := r[0], r[1]
		cs, ce := cbc.CipherRange(off, n, f.DecryptedSize)
		out, err := cl.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(f.PathParts.Container),
			Key: aws.String(f.PathParts.Path), Range: aws.String(fmt.Sprintf("bytes=%d-%d", cs, ce-1))})
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := io.ReadAll(out.Body)
		out.Body.Close()
		iv, err := base64.StdEncoding.DecodeString(out.Metadata["iv"])
		if err != nil || len(iv) != 16 {
			t.Fatalf("iv metadata %q", out.Metadata["iv"])
		}
		got, err := cbc.DecryptRange(key, iv, f.DecryptedSize, off, n, ct)
		if err != nil || !bytes.Equal(got, plain[off:off+n]) {
			t.Fatalf("range [%d,+%d): %v", off, n, err)
		}
	}
	if _, err := cl.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(StorageBucket), Key: aws.String(f.PathParts.Path)}); err != nil {
		t.Fatal(err)
	}
	// Expired credentials are refused.
	h.clock.Advance(credentialLifetime + 1)
	if _, err := cl.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String(StorageBucket), Key: aws.String(f.PathParts.Path)}); err == nil {
		t.Fatal("expired credentials accepted")
	}
}

// uploadParts encrypts plain in parts chained as Rescale's clients do and uploads parts [from, to).
func uploadParts(t *testing.T, cl *s3.Client, key string, uploadID string, plain, k, iv []byte, partSize, from, to int) []types.CompletedPart {
	t.Helper()
	enc, _ := cbc.NewEncrypter(k, iv)
	var parts []types.CompletedPart
	for i, off := 0, 0; off < len(plain) || i == 0; i, off = i+1, off+partSize {
		end := min(off+partSize, len(plain))
		ct, err := enc.Part(plain[off:end], end == len(plain))
		if err != nil {
			t.Fatal(err)
		}
		if i < from || i >= to {
			if end == len(plain) {
				break
			}
			continue
		}
		out, err := cl.UploadPart(context.Background(), &s3.UploadPartInput{Bucket: aws.String(StorageBucket), Key: aws.String(key),
			UploadId: aws.String(uploadID), PartNumber: aws.Int32(int32(i + 1)), Body: bytes.NewReader(ct)})
		if err != nil {
			t.Fatalf("part %d: %v", i+1, err)
		}
		parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(int32(i + 1))})
		if end == len(plain) {
			break
		}
	}
	return parts
}

func register(t *testing.T, h *harness, name, objKey string, k []byte, plain []byte, size int64) (int, []byte) {
	t.Helper()
	sum := sha512.Sum512(plain)
	body, _ := json.Marshal(map[string]any{"typeId": 1, "name": name, "encodedEncryptionKey": base64.StdEncoding.EncodeToString(k),
		"pathParts": map[string]string{"container": StorageBucket, "path": objKey}, "isUploaded": true, "decryptedSize": size,
		"storage":       map[string]string{"id": storageID, "storageType": storageType, "encryptionType": encryptionType},
		"fileChecksums": []map[string]string{{"hashFunction": "sha512", "fileHash": hex.EncodeToString(sum[:])}}})
	resp, b := h.do(http.MethodPost, "/api/v3/files/", bytes.NewReader(body))
	return resp.StatusCode, b
}

func TestS3MultipartUploadThenRegister(t *testing.T) {
	h := newHarness(t, Options{})
	cl := s3Client(t, h)
	var me userJSON
	h.getJSON("/api/v3/users/me/", &me)
	plain := make([]byte, 5<<20+1234)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range plain {
		plain[i] = byte(rng.Uint32())
	}
	k, iv := cbc.NewKey(), cbc.NewIV()
	objKey := me.DefaultStorage.ConnectionSettings.PathBase + "/big.bin-" + randomID(22)
	cr, err := cl.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String(StorageBucket),
		Key: aws.String(objKey), Metadata: map[string]string{"iv": base64.StdEncoding.EncodeToString(iv)}})
	if err != nil {
		t.Fatal(err)
	}
	parts := uploadParts(t, cl, objKey, *cr.UploadId, plain, k, iv, 1<<20, 0, 100)
	lp, err := cl.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(StorageBucket), Key: aws.String(objKey), UploadId: cr.UploadId})
	if err != nil || len(lp.Parts) != len(parts) {
		t.Fatalf("ListParts: %v, %d parts", err, len(lp.Parts))
	}
	if _, err := cl.CompleteMultipartUpload(context.Background(), &s3.CompleteMultipartUploadInput{Bucket: aws.String(StorageBucket),
		Key: aws.String(objKey), UploadId: cr.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}); err != nil {
		t.Fatal(err)
	}
	// A wrong checksum is refused; the right one registers the file.
	if st, _ := register(t, h, "big.bin", objKey, k, plain[1:], int64(len(plain))); st != 400 {
		t.Fatalf("mismatched sha512 registered: %d", st)
	}
	st, b := register(t, h, "big.bin", objKey, k, plain, int64(len(plain)))
	if st != 201 {
		t.Fatalf("register: %d %s", st, b)
	}
	var f fileJSON
	json.Unmarshal(b, &f)
	if got := plaintext(t, h.e, f.ID); !bytes.Equal(got, plain) {
		t.Fatal("registered file's plaintext differs")
	}
	resp, got := h.do(http.MethodGet, "/api/v2/files/"+f.ID+"/contents/", nil, "Range", "bytes=1048570-1048600")
	if resp.StatusCode != 206 || !bytes.Equal(got, plain[1048570:1048601]) {
		t.Fatal("contents of the registered file")
	}
}

func TestS3MultipartSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	e1, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e1)
	h1 := &harness{t: t, e: e1, srv: srv}
	cl := s3Client(t, h1)
	plain := bytes.Repeat([]byte("rescale multipart restart test! "), 100_000) // 3.2 MB
	k, iv := cbc.NewKey(), cbc.NewIV()
	objKey := "user/x/restart.bin-" + randomID(22)
	cr, err := cl.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String(StorageBucket),
		Key: aws.String(objKey), Metadata: map[string]string{"iv": base64.StdEncoding.EncodeToString(iv)}})
	if err != nil {
		t.Fatal(err)
	}
	first := uploadParts(t, cl, objKey, *cr.UploadId, plain, k, iv, 1<<20, 0, 2)
	srv.Close()
	e1.Close()

	// Same data dir, new emulator, new server (the client's credentials still work).
	e2, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(e2)
	defer srv2.Close()
	defer e2.Close()
	h2 := &harness{t: t, e: e2, srv: srv2}
	cl2 := s3Client(t, h2)
	lp, err := cl2.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(StorageBucket), Key: aws.String(objKey), UploadId: cr.UploadId})
	if err != nil || len(lp.Parts) != 2 || *lp.Parts[1].ETag != *first[1].ETag {
		t.Fatalf("ListParts after restart: %v %+v", err, lp)
	}
	rest := uploadParts(t, cl2, objKey, *cr.UploadId, plain, k, iv, 1<<20, 2, 100)
	if _, err := cl2.CompleteMultipartUpload(context.Background(), &s3.CompleteMultipartUploadInput{Bucket: aws.String(StorageBucket),
		Key: aws.String(objKey), UploadId: cr.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: append(first, rest...)}}); err != nil {
		t.Fatal(err)
	}
	if st, b := register(t, h2, "restart.bin", objKey, k, plain, int64(len(plain))); st != 201 {
		t.Fatalf("register after restart: %d %s", st, b)
	}
	if c := e2.Counters(); c.Requests[EndpointS3UploadPart] != int64(len(rest)) {
		t.Fatalf("parts sent after restart: %d, want %d", c.Requests[EndpointS3UploadPart], len(rest))
	}
	// An aborted upload is gone.
	cr2, _ := cl2.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String(StorageBucket), Key: aws.String("x/y")})
	if _, err := cl2.AbortMultipartUpload(context.Background(), &s3.AbortMultipartUploadInput{Bucket: aws.String(StorageBucket), Key: aws.String("x/y"), UploadId: cr2.UploadId}); err != nil {
		t.Fatal(err)
	}
	_, err = cl2.ListParts(context.Background(), &s3.ListPartsInput{Bucket: aws.String(StorageBucket), Key: aws.String("x/y"), UploadId: cr2.UploadId})
	var nsu *types.NoSuchUpload
	if err == nil || !(errors.As(err, &nsu) || strings.Contains(err.Error(), "NoSuchUpload")) {
		t.Fatalf("ListParts of an aborted upload: %v", err)
	}
}
