package upload

import (
	"bytes"
	"context"
	"crypto/md5"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/cbc"
)

// storageClient is the S3 client of the user's default storage, made on first use.
func (e *Engine) storageClient(ctx context.Context) (*remote.S3Client, remote.Storage, error) {
	e.s3mu.Lock()
	defer e.s3mu.Unlock()
	if e.s3 != nil {
		return e.s3, e.storage, nil
	}
	me, err := e.c.Me(ctx)
	if err != nil {
		return nil, remote.Storage{}, fmt.Errorf("default storage: %w", err)
	}
	st := me.DefaultStorage
	if st.StorageType != remote.StorageTypeS3 {
		return nil, remote.Storage{}, fmt.Errorf("default storage is %q: only S3 storage takes direct uploads", st.StorageType)
	}
	o := e.o.S3
	o.Credentials = nil
	o.Region, o.Endpoint = st.ConnectionSettings.Region, st.ConnectionSettings.Endpoint
	if o.Logger == nil {
		o.Logger = e.log
	}
	s, err := e.c.NewS3Client(ctx, o)
	if err != nil {
		return nil, remote.Storage{}, err
	}
	e.s3, e.storage = s, st
	return s, st, nil
}

// partSizeFor grows the part size for files that would need more than MaxParts parts.
func (e *Engine) partSizeFor(size int64) int64 {
	ps := e.o.PartSize
	for (size+ps-1)/ps > MaxParts {
		ps *= 2
	}
	return ps
}

// objectAlphabet is the alphabet of the random suffix of object keys.
const objectAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// objectKey is {pathBase}/{filename}-{22 random letters/digits}, as Rescale's clients name objects.
func objectKey(pathBase, name string) string {
	b := make([]byte, 22)
	_, _ = crand.Read(b)
	for i := range b {
		b[i] = objectAlphabet[int(b[i])%len(objectAlphabet)]
	}
	return path.Join(pathBase, strings.ReplaceAll(name, "/", "_")+"-"+string(b))
}

// startObject begins a new multipart upload with a fresh key, IV and object, all journaled before
// anything is sent under them.
func (e *Engine) startObject(ctx context.Context, u *upload, s3c *remote.S3Client, st remote.Storage) (record, error) {
	key, iv := cbc.NewKey(), cbc.NewIV()
	r, err := e.update(u, func(r *record) {
		r.Key = base64.StdEncoding.EncodeToString(key)
		r.IV = base64.StdEncoding.EncodeToString(iv)
		r.Bucket = st.ConnectionSettings.Container
		r.ObjectKey = objectKey(st.ConnectionSettings.PathBase, r.Name)
		r.StorageID, r.StorageType, r.StorageEncr = st.ID, st.StorageType, st.EncryptionType
		r.PartSize = e.partSizeFor(r.Size)
		r.S3UploadID, r.ObjectDone, r.PublishedSent, r.Sent = "", false, false, nil
	})
	if err != nil {
		return r, err
	}
	// Once sent, the upload may exist on the storage and only the answer tells its id: a cancel of this
	// upload (ctx) waits for the answer, so that the id is journaled and the withdrawal aborts the
	// upload, rather than leaving it behind unknown. Only Close cuts it short (the engine's context).
	// The key is fresh: a create whose answer was lost is aborted by the storage client (see
	// remote.S3Client.CreateMultipartUpload), not left behind.
	uploadID, err := s3c.CreateMultipartUpload(e.engineCtx(), r.Bucket, r.ObjectKey, map[string]string{"iv": r.IV})
	if err != nil {
		return r, err
	}
	if err := e.resetParts(u); err != nil {
		return r, err
	}
	u.confirmed.Store(0)
	return e.update(u, func(r *record) { r.S3UploadID = uploadID })
}

// forgetObject drops the multipart upload from the record: the next attempt starts a new one.
func (e *Engine) forgetObject(u *upload) error {
	_, err := e.update(u, func(r *record) { r.S3UploadID, r.ObjectDone, r.PublishedSent, r.Sent = "", false, false, nil })
	u.confirmed.Store(0)
	return err
}

// listedPart is a part S3 reports for an upload.
type listedPart struct {
	etag string
	size int64
}

// listParts asks S3 which parts it holds (all pages).
func listParts(ctx context.Context, s3c *remote.S3Client, r *record) (map[int32]listedPart, error) {
	out := map[int32]listedPart{}
	var marker *string
	for {
		lp, err := s3c.SDK().ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(r.Bucket), Key: aws.String(r.ObjectKey),
			UploadId: aws.String(r.S3UploadID), PartNumberMarker: marker})
		if err != nil {
			return nil, err
		}
		for _, p := range lp.Parts {
			out[aws.ToInt32(p.PartNumber)] = listedPart{etag: strings.Trim(aws.ToString(p.ETag), `"`), size: aws.ToInt64(p.Size)}
		}
		if !aws.ToBool(lp.IsTruncated) || lp.NextPartNumberMarker == nil || aws.ToString(lp.NextPartNumberMarker) == aws.ToString(marker) {
			return out, nil
		}
		marker = lp.NextPartNumberMarker
	}
}

// objectComplete says whether the object of r exists with the size a complete upload gives it: a
// CompleteMultipartUpload that succeeded although its answer was lost.
func objectComplete(ctx context.Context, s3c *remote.S3Client, r *record) (bool, error) {
	h, err := s3c.SDK().HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(r.Bucket), Key: aws.String(r.ObjectKey)})
	if remote.IsNoSuchKey(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return aws.ToInt64(h.ContentLength) == cbc.CiphertextSize(r.Size), nil
}

// sendMultipart uploads (or resumes) the encrypted object, completes it and registers the file.
func (e *Engine) sendMultipart(ctx context.Context, u *upload) (remote.File, error) {
	s3c, st, err := e.storageClient(ctx)
	if err != nil {
		return remote.File{}, err
	}
	r := e.snapshotRec(u)
	var listed map[int32]listedPart
	if !r.ObjectDone {
		if r, listed, err = e.resumeOrStart(ctx, u, s3c, st, r); err != nil {
			return remote.File{}, err
		}
		if err := ctx.Err(); err != nil { // cancelled while the upload was created: no part follows
			return remote.File{}, err
		}
	}
	if !r.ObjectDone {
		if err := e.sendParts(ctx, u, s3c, &r, listed); err != nil {
			return remote.File{}, err
		}
		if err := e.complete(ctx, u, s3c, &r); err != nil {
			return remote.File{}, err
		}
	}
	return e.register(ctx, u)
}

// resumeOrStart checks a journaled multipart upload against S3 (ListParts), or starts one, and returns
// the parts S3 holds (none for a new upload).
func (e *Engine) resumeOrStart(ctx context.Context, u *upload, s3c *remote.S3Client, st remote.Storage, r record) (record, map[int32]listedPart, error) {
	if r.S3UploadID != "" {
		listed, err := listParts(ctx, s3c, &r)
		if err == nil {
			return r, listed, nil
		}
		if !remote.IsNoSuchUpload(err) {
			return r, nil, fmt.Errorf("list parts: %w", err)
		}
		// S3 no longer knows the upload: perhaps it was completed (the answer lost), else start again.
		done, herr := objectComplete(ctx, s3c, &r)
		if herr != nil {
			return r, nil, fmt.Errorf("check object: %w", herr)
		}
		if done {
			r, err := e.update(u, func(r *record) { r.ObjectDone = true })
			return r, nil, err
		}
		e.log.Info("upload: storage forgot the multipart upload, starting again", "upload", u.id, "name", r.Name)
	}
	r, err := e.startObject(ctx, u, s3c, st)
	return r, nil, err
}

// sendParts encrypts the parts in order and sends those S3 does not have yet, UploadParallel at a
// time across all uploads (Engine.parts). A part S3 already has is skipped when the journal holds it (its chain block lets the next part
// go on without re-encrypting it), or when S3 lists it and its ETag equals the MD5 of the ciphertext
// computed again (a part that arrived just before a crash): only parts that never arrived are re-sent.
// listed is what ListParts answered for r's upload (resumeOrStart).
func (e *Engine) sendParts(ctx context.Context, u *upload, s3c *remote.S3Client, r *record, listed map[int32]listedPart) error {
	key, err := base64.StdEncoding.DecodeString(r.Key)
	if err != nil {
		return fmt.Errorf("%w: journaled key: %v", ErrDamaged, err)
	}
	chain, err := base64.StdEncoding.DecodeString(r.IV)
	if err != nil {
		return fmt.Errorf("%w: journaled IV: %v", ErrDamaged, err)
	}
	journaled, err := e.journaledParts(u.id, r.S3UploadID)
	if err != nil {
		return fmt.Errorf("%w: parts journal: %v", ErrDamaged, err)
	}
	f, err := os.Open(r.Data)
	if err != nil {
		return fmt.Errorf("%w: staging data: %v", ErrDamaged, err)
	}
	defer f.Close()

	ps := r.PartSize
	nparts := max(1, (r.Size+ps-1)/ps)
	var fe firstError
	var wg sync.WaitGroup
	u.confirmed.Store(0)
	for i := int32(1); int64(i) <= nparts; i++ {
		if fe.get() != nil {
			break // let the parts in flight finish, start no more
		}
		off := int64(i-1) * ps
		n := min(ps, r.Size-off)
		final := int64(i) == nparts
		if jp, ok := journaled[i]; ok {
			if lp, ok := listed[i]; ok && lp.etag == jp.ETag && lp.size == jp.Size {
				if c, err := base64.StdEncoding.DecodeString(jp.Chain); err == nil && len(c) == cbc.BlockSize {
					chain = c
					u.confirmed.Add(n)
					continue
				}
			}
		}
		// The part is read, encrypted and sent from one buffer, given back when its request ends.
		buf := getPartBuf(ps)
		if _, err := f.ReadAt(buf[:n], off); err != nil && !(errors.Is(err, io.EOF) && n == 0) {
			putPartBuf(buf)
			fe.set(fmt.Errorf("%w: reading staging data at %d: %v", ErrDamaged, off, err))
			break
		}
		enc, err := cbc.NewEncrypter(key, chain)
		if err != nil {
			putPartBuf(buf)
			fe.set(err)
			break
		}
		ct, err := enc.PartInPlace(buf[:n], final)
		if err != nil {
			putPartBuf(buf)
			fe.set(err)
			break
		}
		chain = enc.Chain()
		sum := md5.Sum(ct)
		pr := partRecord{Upload: r.S3UploadID, N: i, ETag: hex.EncodeToString(sum[:]), Size: int64(len(ct)),
			Chain: base64.StdEncoding.EncodeToString(chain)}
		if lp, ok := listed[i]; ok && lp.etag == pr.ETag && lp.size == pr.Size {
			// Arrived before the crash, never journaled: the same bytes, no need to send them again.
			putPartBuf(buf)
			if err := e.appendPart(u, pr); err != nil {
				fe.set(err)
				break
			}
			u.confirmed.Add(n)
			continue
		}
		if !e.takePart(ctx, u.id, i) {
			putPartBuf(buf)
			fe.set(ctx.Err())
			break
		}
		if fe.get() != nil { // a part failed while this one waited: give its token back
			<-e.parts
			putPartBuf(buf)
			break
		}
		wg.Go(func() {
			defer func() { <-e.parts }()
			defer putPartBuf(buf)
			if err := e.sendPart(ctx, u, s3c, r, pr, ct, sum[:], n); err != nil {
				fe.set(err)
				return
			}
			if err := e.appendPart(u, pr); err != nil {
				fe.set(err)
				return
			}
			u.confirmed.Add(n)
		})
	}
	wg.Wait()
	return fe.get()
}

// partBufs are part buffers (*[]byte) for reuse: the ciphertext of a 1 GiB upload is otherwise 1 GiB of
// fresh memory, zeroed and faulted in, for the garbage collector. A sync.Pool, so that a mount that
// stopped uploading gives them back to the system.
var partBufs sync.Pool

// getPartBuf is a buffer for a part of up to ps bytes, with room for the padding of a final part.
func getPartBuf(ps int64) []byte {
	need := int(ps) + cbc.BlockSize
	if b, ok := partBufs.Get().(*[]byte); ok && cap(*b) >= need {
		return (*b)[:need]
	}
	return make([]byte, need)
}

func putPartBuf(b []byte) { partBufs.Put(&b) }

// takePart takes a token for part n of upload id (Engine.parts): false when ctx ends first.
func (e *Engine) takePart(ctx context.Context, id string, n int32) bool {
	select {
	case e.parts <- struct{}{}:
		return true
	default:
	}
	if e.o.partWaits != nil {
		e.o.partWaits(id, n)
	}
	select {
	case e.parts <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// journaledParts are the parts of the S3 upload id the journal holds (the last line for a number wins).
func (e *Engine) journaledParts(id, s3UploadID string) (map[int32]partRecord, error) {
	ps, err := e.j.loadParts(id)
	if err != nil {
		return nil, err
	}
	out := map[int32]partRecord{}
	for _, p := range ps {
		if p.Upload == s3UploadID {
			out[p.N] = p
		}
	}
	return out, nil
}

func (e *Engine) appendPart(u *upload, p partRecord) error {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	if e.isWithdrawn(u) {
		return errWithdrawn
	}
	return e.j.appendPart(u.id, p)
}

// resetParts starts u's empty parts log (a new multipart upload).
func (e *Engine) resetParts(u *upload) error {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	if e.isWithdrawn(u) {
		return errWithdrawn
	}
	return e.j.resetParts(u.id)
}

// sendPart uploads one encrypted part with its Content-MD5 and checks the ETag S3 answers.
func (e *Engine) sendPart(ctx context.Context, u *upload, s3c *remote.S3Client, r *record, p partRecord, ct, sum []byte, plainLen int64) error {
	if e.o.beforePart != nil {
		if err := e.o.beforePart(ctx, u.id, p.N); err != nil {
			return err
		}
	}
	body := &partBody{r: bytes.NewReader(ct), plainLen: plainLen}
	u.inflight.Store(body, struct{}{})
	defer u.inflight.Delete(body)
	out, err := s3c.SDK().UploadPart(ctx, &s3.UploadPartInput{
		Bucket:        aws.String(r.Bucket),
		Key:           aws.String(r.ObjectKey),
		UploadId:      aws.String(r.S3UploadID),
		PartNumber:    aws.Int32(p.N),
		Body:          body,
		ContentLength: aws.Int64(int64(len(ct))),
		ContentMD5:    aws.String(base64.StdEncoding.EncodeToString(sum)),
	})
	if err != nil {
		if remote.IsNoSuchUpload(err) {
			_ = e.forgetObject(u)
		}
		return fmt.Errorf("part %d: %w", p.N, err)
	}
	// With server-side encryption by KMS the ETag is not the MD5; a plain MD5-shaped ETag must match.
	if etag := strings.Trim(aws.ToString(out.ETag), `"`); isMD5Hex(etag) && etag != p.ETag {
		return fmt.Errorf("part %d: ETag %s, want the MD5 %s of what was sent", p.N, etag, p.ETag)
	}
	return nil
}

func isMD5Hex(s string) bool {
	if len(s) != 32 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// complete asks S3 to assemble the object from the journaled parts.
func (e *Engine) complete(ctx context.Context, u *upload, s3c *remote.S3Client, r *record) error {
	journaled, err := e.journaledParts(u.id, r.S3UploadID)
	if err != nil {
		return fmt.Errorf("%w: parts journal: %v", ErrDamaged, err)
	}
	nparts := max(1, (r.Size+r.PartSize-1)/r.PartSize)
	parts := make([]types.CompletedPart, 0, nparts)
	for i := int32(1); int64(i) <= nparts; i++ {
		p, ok := journaled[i]
		if !ok {
			return fmt.Errorf("part %d missing from the journal", i)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(i), ETag: aws.String(`"` + p.ETag + `"`)})
	}
	_, err = s3c.SDK().CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(r.Bucket), Key: aws.String(r.ObjectKey), UploadId: aws.String(r.S3UploadID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	})
	if err != nil && remote.IsNoSuchUpload(err) {
		// A retried Complete whose first try went through, or an upload that expired.
		done, herr := objectComplete(ctx, s3c, r)
		if herr == nil && done {
			err = nil
		} else if herr == nil {
			_ = e.forgetObject(u)
		}
	}
	if err != nil {
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	nr, err := e.update(u, func(r *record) { r.ObjectDone = true })
	*r = nr
	return err
}

// register publishes the completed object as a library file (POST /api/v3/files/).
func (e *Engine) register(ctx context.Context, u *upload) (remote.File, error) {
	r, err := e.beginPublish(u)
	defer e.endPublish(u)
	if err != nil {
		return remote.File{}, err
	}
	f, err := e.c.RegisterFile(e.publishCtx(), remote.FileRegistration{
		TypeID:               remote.TypeInput,
		Name:                 r.Name,
		EncodedEncryptionKey: r.Key,
		PathParts:            remote.PathParts{Container: r.Bucket, Path: r.ObjectKey},
		Storage:              remote.StorageRef{ID: r.StorageID, StorageType: r.StorageType, EncryptionType: r.StorageEncr},
		IsUploaded:           true,
		DecryptedSize:        r.Size,
		FileChecksums:        []remote.Checksum{{HashFunction: "sha512", FileHash: r.SHA512}},
	})
	if err != nil {
		e.refused(u, err)
		if errors.Is(err, remote.ErrBadRequest) {
			// The platform refused the object (size or checksum) or its name: send a fresh one next
			// time. The refused one is deleted first (no file holds it, its key is ours), else it
			// stays in the user's storage, unknown to anyone; one whose deletion fails is kept in
			// the record, to be registered again (a name refused) or deleted by a cancel.
			dctx, cancel := context.WithTimeout(e.engineCtx(), supersededTimeout)
			derr := e.deleteObject(dctx, &r)
			cancel()
			if derr == nil {
				_ = e.forgetObject(u)
			} else {
				e.log.Warn("upload: deleting the object the platform refused failed", "upload", u.id, "object", r.ObjectKey, "err", derr)
			}
		}
		return remote.File{}, fmt.Errorf("register %s: %w", r.Name, err)
	}
	u.confirmed.Store(r.Size)
	return f, nil
}

// abort aborts r's multipart upload. An upload S3 no longer knows was either aborted already or
// completed by a CompleteMultipartUpload whose answer was lost (ObjectDone never journaled): its
// object, if any, is deleted, since nothing holds it (a registration is sent only once ObjectDone is
// journaled) and its key is ours.
func (e *Engine) abort(ctx context.Context, r *record) error {
	s3c, _, err := e.storageClient(ctx)
	if err != nil {
		return err
	}
	_, err = s3c.SDK().AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(r.Bucket),
		Key: aws.String(r.ObjectKey), UploadId: aws.String(r.S3UploadID)})
	if remote.IsNoSuchUpload(err) {
		return e.deleteObject(ctx, r)
	}
	return err
}

// deleteObject deletes r's object from the storage: the object of a withdrawn upload that no library
// file holds (never registered, or its registration deleted). Its key is certainly ours: rescalefs
// chose it, random (objectKey), for this upload alone. An object already gone is fine.
func (e *Engine) deleteObject(ctx context.Context, r *record) error {
	return e.deleteStored(ctx, r.Bucket, r.ObjectKey)
}

// deleteStored deletes the object key of bucket (one of ours: deleteObject) from the storage; one
// already gone is fine.
func (e *Engine) deleteStored(ctx context.Context, bucket, key string) error {
	s3c, _, err := e.storageClient(ctx)
	if err != nil {
		return err
	}
	_, err = s3c.SDK().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil && !remote.IsNoSuchKey(err) {
		return err
	}
	return nil
}
