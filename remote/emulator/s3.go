package emulator

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rclone/gofakes3"
)

// The S3 endpoint is github.com/rclone/gofakes3 (the S3 protocol: routing, XML, SigV4, ranges,
// aws-chunked bodies) over s3Backend, which serves the emulator's own objects, so the API and S3 see the
// same bytes. s3Backend implements gofakes3.MultipartBackend so parts stream to blobs rather than being
// held in memory, and journals every upload and part. gofakes3 itself tracks uploads in memory only, so
// after a restart restoreUploads replays the journaled uploads into it (see there).

// metaIV is the object metadata that holds the file IV (base64), as Rescale's clients set it ("iv").
const metaIV = "X-Amz-Meta-Iv"

func (e *Emulator) initS3() error {
	b := &s3Backend{e: e}
	e.s3 = gofakes3.New(b,
		gofakes3.WithLogger(gofakes3.DiscardLog()),
		gofakes3.WithoutVersioning(),
		// The injected clock (tests) must not make every SigV4 signature look skewed.
		gofakes3.WithTimeSkewLimit(0),
	)
	e.s3h = e.s3.Server()
	// Until a key is added gofakes3 accepts anonymous requests: restore the uploads now, through the
	// handler, before any key (and so before signature checks) exists.
	if err := e.restoreUploads(); err != nil {
		return fmt.Errorf("emulator: restore multipart uploads: %w", err)
	}
	keys := map[string]string{"EMULATORPLACEHOLDER": randomID(40)} // never handed out: keeps auth on
	e.mu.RLock()
	for _, c := range e.st.creds {
		keys[c.AccessKey] = c.SecretKey
	}
	e.mu.RUnlock()
	e.s3.AddAuthKeys(keys)
	return nil
}

// s3Endpoint names an S3 request for the counters.
func s3Endpoint(r *http.Request) string {
	q := r.URL.Query()
	obj := strings.Contains(strings.TrimLeft(r.URL.Path, "/"), "/")
	switch {
	case q.Has("uploadId"):
		switch r.Method {
		case http.MethodPut:
			return EndpointS3UploadPart
		case http.MethodGet:
			return EndpointS3ListParts
		case http.MethodPost:
			return EndpointS3Complete
		case http.MethodDelete:
			return EndpointS3Abort
		}
	case q.Has("uploads") && r.Method == http.MethodPost:
		return EndpointS3CreateMultipart
	case !obj && q.Has("uploads") && r.Method == http.MethodGet:
		return EndpointS3ListUploads
	case obj && r.Method == http.MethodGet && len(q) == 0 || obj && r.Method == http.MethodGet && q.Has("partNumber"):
		return EndpointS3Get
	case obj && r.Method == http.MethodHead:
		return EndpointS3Head
	case obj && r.Method == http.MethodPut && !q.Has("tagging"):
		return EndpointS3Put
	case obj && r.Method == http.MethodDelete:
		return EndpointS3Delete
	case !obj && r.Method == http.MethodGet && len(q) == 0, !obj && q.Has("list-type"):
		return EndpointS3List
	}
	if obj && r.Method == http.MethodGet && !q.Has("tagging") && !q.Has("acl") {
		return EndpointS3Get
	}
	return EndpointS3Other
}

// serveS3 checks the expiry of the storage credentials (which gofakes3 does not know about), then hands
// the request to gofakes3.
func (e *Emulator) serveS3(w http.ResponseWriter, r *http.Request) {
	if ak := s3AccessKey(r); ak != "" {
		e.mu.RLock()
		c, ok := e.st.creds[ak]
		e.mu.RUnlock()
		if ok && e.now().After(c.Expires) {
			writeS3Error(w, http.StatusBadRequest, "ExpiredToken", "The provided token has expired.")
			return
		}
		if tok := r.Header.Get("X-Amz-Security-Token"); ok && tok != "" && tok != c.SessionToken {
			writeS3Error(w, http.StatusForbidden, "InvalidToken", "The provided token is malformed or otherwise invalid.")
			return
		}
	}
	e.s3h.ServeHTTP(w, r)
}

// s3AccessKey extracts the access key id of a SigV4 request (header or presigned query).
func s3AccessKey(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if h := r.Header.Get("Authorization"); h != "" {
		_, after, ok := strings.Cut(h, "Credential=")
		if !ok {
			return ""
		}
		cred, _, _ = strings.Cut(after, ",")
	}
	ak, _, _ := strings.Cut(strings.TrimSpace(cred), "/")
	return ak
}

// s3Backend serves the emulator's objects to gofakes3. It has one bucket, StorageBucket.
type s3Backend struct {
	e *Emulator
}

var (
	_ gofakes3.Backend          = (*s3Backend)(nil)
	_ gofakes3.MultipartBackend = (*s3Backend)(nil)
)

var bucketCreated = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func (b *s3Backend) ListBuckets(ctx context.Context) ([]gofakes3.BucketInfo, error) {
	return []gofakes3.BucketInfo{{Name: StorageBucket, CreationDate: gofakes3.NewContentTime(bucketCreated)}}, nil
}

func checkBucket(name string) error {
	if name != StorageBucket {
		return gofakes3.BucketNotFound(name)
	}
	return nil
}

func (b *s3Backend) ListBucket(ctx context.Context, name string, prefix *gofakes3.Prefix, page gofakes3.ListBucketPage) (*gofakes3.ObjectList, error) {
	if err := checkBucket(name); err != nil {
		return nil, err
	}
	if prefix == nil {
		prefix = &gofakes3.Prefix{}
	}
	b.e.mu.RLock()
	objs := make([]*objectRecord, 0, len(b.e.st.objects))
	for _, o := range b.e.st.objects {
		if !page.HasMarker || o.Key > page.Marker {
			objs = append(objs, o)
		}
	}
	b.e.mu.RUnlock()
	slices.SortFunc(objs, func(x, y *objectRecord) int { return strings.Compare(x.Key, y.Key) })
	list := gofakes3.NewObjectList()
	var match gofakes3.PrefixMatch
	var count int64
	lastPrefix := ""
	for i, o := range objs {
		if !prefix.Match(o.Key, &match) {
			continue
		}
		if match.CommonPrefix {
			if match.MatchedPart == lastPrefix {
				continue
			}
			list.AddPrefix(match.MatchedPart)
			lastPrefix = match.MatchedPart
		} else {
			list.Add(&gofakes3.Content{Key: o.Key, LastModified: gofakes3.NewContentTime(o.Modified),
				ETag: `"` + o.ETag + `"`, Size: o.Size, StorageClass: "STANDARD"})
		}
		count++
		if page.MaxKeys > 0 && count >= page.MaxKeys {
			list.NextMarker = o.Key
			list.IsTruncated = i+1 < len(objs)
			break
		}
	}
	return list, nil
}

func (b *s3Backend) CreateBucket(ctx context.Context, name string) error {
	if name == StorageBucket {
		return gofakes3.ResourceError(gofakes3.ErrBucketAlreadyExists, name)
	}
	return gofakes3.ErrNotImplemented
}

func (b *s3Backend) BucketExists(ctx context.Context, name string) (bool, error) {
	return name == StorageBucket, nil
}

func (b *s3Backend) DeleteBucket(ctx context.Context, name string) error {
	if err := checkBucket(name); err != nil {
		return err
	}
	return gofakes3.ResourceError(gofakes3.ErrBucketNotEmpty, name)
}

func (b *s3Backend) lookup(bucket, key string) (*objectRecord, error) {
	if err := checkBucket(bucket); err != nil {
		return nil, err
	}
	b.e.mu.RLock()
	o, ok := b.e.st.objects[key]
	b.e.mu.RUnlock()
	if !ok {
		return nil, gofakes3.KeyNotFound(key)
	}
	return o, nil
}

func etagHash(etag string) []byte {
	h, _ := hex.DecodeString(strings.SplitN(etag, "-", 2)[0])
	return h
}

func (b *s3Backend) HeadObject(ctx context.Context, bucket, key string) (*gofakes3.Object, error) {
	o, err := b.lookup(bucket, key)
	if err != nil {
		return nil, err
	}
	return &gofakes3.Object{Name: key, Metadata: copyMeta(o.Meta), Size: o.Size, Contents: discardCloser{},
		Hash: etagHash(o.ETag), PartSizes: o.PartSizes}, nil
}

func copyMeta(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// GetObject streams the stored ciphertext (or the requested range of it): never buffered whole.
func (b *s3Backend) GetObject(ctx context.Context, bucket, key string, rr *gofakes3.ObjectRangeRequest) (*gofakes3.Object, error) {
	o, err := b.lookup(bucket, key)
	if err != nil {
		return nil, err
	}
	rng, err := rr.Range(o.Size)
	if err != nil {
		return nil, err
	}
	or, err := openObject(b.e.blobs, o)
	if err != nil {
		return nil, err
	}
	start, length := int64(0), o.Size
	if rng != nil {
		start, length = rng.Start, rng.Length
	}
	body := struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(or, start, length), or}
	return &gofakes3.Object{Name: key, Metadata: copyMeta(o.Meta), Size: o.Size, Contents: body,
		Hash: etagHash(o.ETag), Range: rng, PartSizes: o.PartSizes}, nil
}

func (b *s3Backend) DeleteObject(ctx context.Context, bucket, key string) (gofakes3.ObjectDeleteResult, error) {
	if err := checkBucket(bucket); err != nil {
		return gofakes3.ObjectDeleteResult{}, err
	}
	b.e.mu.Lock()
	o, ok := b.e.st.objects[key]
	var err error
	if ok {
		err = b.e.commitLocked(record{DelObject: key})
	}
	b.e.mu.Unlock()
	if ok && err == nil {
		b.removeBlobs(o.Blobs)
	}
	return gofakes3.ObjectDeleteResult{}, err
}

func (b *s3Backend) removeBlobs(refs []blobRef) {
	for _, r := range refs {
		if err := b.e.blobs.remove(r.ID); err != nil {
			b.e.log.Warn("emulator: remove blob", "blob", r.ID, "err", err)
		}
	}
}

// writeBlob streams r into a new blob, checking it holds exactly size bytes when size >= 0.
func (b *s3Backend) writeBlob(r io.Reader, size int64) (blobRef, string, error) {
	bw, err := b.e.blobs.create()
	if err != nil {
		return blobRef{}, "", err
	}
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(bw, h), r)
	if err == nil && size >= 0 && n != size {
		err = gofakes3.ErrIncompleteBody
	}
	if err != nil {
		bw.abort()
		return blobRef{}, "", err
	}
	ref, err := bw.commit()
	return ref, hex.EncodeToString(h.Sum(nil)), err
}

// putObjectLocked stores o in place of any object at its key, returning the replaced blobs to remove.
func (b *s3Backend) putObjectLocked(o *objectRecord, extra ...record) ([]blobRef, error) {
	var old []blobRef
	if prev, ok := b.e.st.objects[o.Key]; ok {
		old = prev.Blobs
	}
	if err := b.e.commitLocked(append([]record{{Object: o}}, extra...)...); err != nil {
		return nil, err
	}
	return old, nil
}

func (b *s3Backend) PutObject(ctx context.Context, bucket, key string, meta map[string]string, input io.Reader, size int64) (gofakes3.PutObjectResult, error) {
	if err := checkBucket(bucket); err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	ref, sum, err := b.writeBlob(input, size)
	if err != nil {
		return gofakes3.PutObjectResult{}, err
	}
	o := &objectRecord{Key: key, Size: ref.Size, ETag: sum, Meta: copyMeta(meta), Modified: b.e.now(), Blobs: []blobRef{ref}}
	b.e.mu.Lock()
	old, err := b.putObjectLocked(o)
	b.e.mu.Unlock()
	if err != nil {
		b.removeBlobs([]blobRef{ref})
		return gofakes3.PutObjectResult{}, err
	}
	b.removeBlobs(old)
	return gofakes3.PutObjectResult{}, nil
}

func (b *s3Backend) DeleteMulti(ctx context.Context, bucket string, keys ...string) (gofakes3.MultiDeleteResult, error) {
	var res gofakes3.MultiDeleteResult
	for _, k := range keys {
		if _, err := b.DeleteObject(ctx, bucket, k); err != nil {
			res.Error = append(res.Error, gofakes3.ErrorResultFromError(err))
			continue
		}
		res.Deleted = append(res.Deleted, gofakes3.ObjectID{Key: k})
	}
	return res, nil
}

// CopyObject copies the bytes (blobs are owned by one object each).
func (b *s3Backend) CopyObject(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	src, err := b.GetObject(ctx, srcBucket, srcKey, nil)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	defer src.Contents.Close()
	if _, err := b.PutObject(ctx, dstBucket, dstKey, meta, src.Contents, src.Size); err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	o, err := b.lookup(dstBucket, dstKey)
	if err != nil {
		return gofakes3.CopyObjectResult{}, err
	}
	return gofakes3.CopyObjectResult{ETag: `"` + o.ETag + `"`, LastModified: gofakes3.NewContentTime(o.Modified)}, nil
}

// restoring marks the synthetic requests restoreUploads sends through gofakes3: the backend answers them
// from the journal instead of creating anything.
type restoring struct {
	uploadID string
	etag     string
}

type restoringKey struct{}

func (b *s3Backend) CreateMultipartUpload(ctx context.Context, bucket, key string, meta map[string]string) (gofakes3.UploadID, error) {
	if rs, ok := ctx.Value(restoringKey{}).(restoring); ok {
		return gofakes3.UploadID(rs.uploadID), nil
	}
	if err := checkBucket(bucket); err != nil {
		return "", err
	}
	u := &uploadRecord{ID: randomHex(16), Bucket: bucket, Key: key, Meta: copyMeta(meta), Initiated: b.e.now(),
		Parts: map[int]partRecord{}}
	b.e.mu.Lock()
	defer b.e.mu.Unlock()
	if err := b.e.commitLocked(record{Upload: u}); err != nil {
		return "", err
	}
	return gofakes3.UploadID(u.ID), nil
}

func (b *s3Backend) UploadPart(ctx context.Context, bucket, key string, id gofakes3.UploadID, partNumber int, contentLength int64, body io.Reader) (string, error) {
	if rs, ok := ctx.Value(restoringKey{}).(restoring); ok {
		return rs.etag, nil
	}
	b.e.mu.RLock()
	_, ok := b.e.st.uploads[string(id)]
	b.e.mu.RUnlock()
	if !ok {
		return "", gofakes3.ErrNoSuchUpload
	}
	ref, sum, err := b.writeBlob(body, contentLength)
	if err != nil {
		return "", err
	}
	etag := `"` + sum + `"`
	b.e.mu.Lock()
	u, ok := b.e.st.uploads[string(id)]
	if !ok {
		b.e.mu.Unlock()
		b.removeBlobs([]blobRef{ref})
		return "", gofakes3.ErrNoSuchUpload
	}
	nu := *u
	nu.Parts = make(map[int]partRecord, len(u.Parts)+1)
	for k, v := range u.Parts {
		nu.Parts[k] = v
	}
	old, replaced := u.Parts[partNumber]
	nu.Parts[partNumber] = partRecord{Blob: ref, ETag: etag, MD5: sum, At: b.e.now()}
	err = b.e.commitLocked(record{Upload: &nu})
	b.e.mu.Unlock()
	if err != nil {
		b.removeBlobs([]blobRef{ref})
		return "", err
	}
	if replaced {
		b.removeBlobs([]blobRef{old.Blob})
	}
	return etag, nil
}

func (b *s3Backend) CompleteMultipartUpload(ctx context.Context, bucket, key string, id gofakes3.UploadID, in *gofakes3.CompleteMultipartUploadRequest) (gofakes3.VersionID, string, error) {
	b.e.mu.Lock()
	u, ok := b.e.st.uploads[string(id)]
	if !ok || u.Key != key {
		b.e.mu.Unlock()
		return "", "", gofakes3.ErrNoSuchUpload
	}
	o := &objectRecord{Key: key, Meta: copyMeta(u.Meta), Modified: b.e.now()}
	o.Meta["Last-Modified"] = o.Modified.UTC().Format(http.TimeFormat)
	sums := md5.New()
	used := map[int]bool{}
	last := 0
	for _, p := range in.Parts {
		part, ok := u.Parts[p.PartNumber]
		if p.PartNumber <= last {
			b.e.mu.Unlock()
			return "", "", gofakes3.ErrInvalidPartOrder
		}
		if !ok || strings.Trim(p.ETag, `"`) != part.MD5 {
			b.e.mu.Unlock()
			return "", "", gofakes3.ErrorMessagef(gofakes3.ErrInvalidPart, "part %d is missing or its ETag differs", p.PartNumber)
		}
		last = p.PartNumber
		used[p.PartNumber] = true
		raw, _ := hex.DecodeString(part.MD5)
		sums.Write(raw)
		o.Blobs = append(o.Blobs, part.Blob)
		o.PartSizes = append(o.PartSizes, part.Blob.Size)
		o.Size += part.Blob.Size
	}
	o.ETag = hex.EncodeToString(sums.Sum(nil)) + "-" + strconv.Itoa(len(in.Parts))
	var unused []blobRef
	for n, p := range u.Parts {
		if !used[n] {
			unused = append(unused, p.Blob)
		}
	}
	old, err := b.putObjectLocked(o, record{DelUpload: u.ID})
	b.e.mu.Unlock()
	if err != nil {
		return "", "", err
	}
	b.removeBlobs(append(unused, old...))
	return "", `"` + o.ETag + `"`, nil
}

func (b *s3Backend) AbortMultipartUpload(ctx context.Context, bucket, key string, id gofakes3.UploadID) error {
	b.e.mu.Lock()
	u, ok := b.e.st.uploads[string(id)]
	if !ok {
		b.e.mu.Unlock()
		return gofakes3.ErrNoSuchUpload
	}
	err := b.e.commitLocked(record{DelUpload: u.ID})
	b.e.mu.Unlock()
	if err != nil {
		return err
	}
	var blobs []blobRef
	for _, p := range u.Parts {
		blobs = append(blobs, p.Blob)
	}
	b.removeBlobs(blobs)
	return nil
}

// restoreUploads makes gofakes3 know the multipart uploads the journal holds. gofakes3 keeps its upload
// bookkeeping (ids, parts for ListParts) in memory and has no API to load it, so each upload is replayed
// through its own handler as a CreateMultipartUpload and one UploadPart per stored part, marked with a
// context value: the backend answers with the journaled id and ETags and reads no body. The parts' bytes
// stay where they are; a client resuming after the restart sees, through ListParts, exactly the parts it
// had sent.
func (e *Emulator) restoreUploads() error {
	e.mu.RLock()
	ups := make([]*uploadRecord, 0, len(e.st.uploads))
	for _, u := range e.st.uploads {
		ups = append(ups, u)
	}
	e.mu.RUnlock()
	slices.SortFunc(ups, func(a, b *uploadRecord) int { return a.Initiated.Compare(b.Initiated) })
	for _, u := range ups {
		target := (&url.URL{Path: "/" + u.Bucket + "/" + u.Key}).EscapedPath()
		ctx := context.WithValue(context.Background(), restoringKey{}, restoring{uploadID: u.ID})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target+"?uploads", http.NoBody)
		if err != nil {
			return err
		}
		for k, v := range u.Meta {
			if strings.HasPrefix(k, "X-Amz-Meta-") || k == "Content-Type" {
				req.Header.Set(k, v)
			}
		}
		if st := serveInternal(e.s3h, req); st != http.StatusOK {
			return fmt.Errorf("upload %s: create answered %d", u.ID, st)
		}
		nums := make([]int, 0, len(u.Parts))
		for n := range u.Parts {
			nums = append(nums, n)
		}
		slices.Sort(nums)
		for _, n := range nums {
			p := u.Parts[n]
			ctx := context.WithValue(context.Background(), restoringKey{}, restoring{uploadID: u.ID, etag: p.ETag})
			q := url.Values{"partNumber": {strconv.Itoa(n)}, "uploadId": {u.ID}}
			req, err := http.NewRequestWithContext(ctx, http.MethodPut, target+"?"+q.Encode(), http.NoBody)
			if err != nil {
				return err
			}
			req.Header.Set("Content-Length", strconv.FormatInt(p.Blob.Size, 10))
			if st := serveInternal(e.s3h, req); st != http.StatusOK {
				return fmt.Errorf("upload %s part %d: answered %d", u.ID, n, st)
			}
		}
	}
	return nil
}

// serveInternal runs h on req and returns the status it answered.
func serveInternal(h http.Handler, req *http.Request) int {
	w := &statusOnly{header: http.Header{}, status: http.StatusOK}
	h.ServeHTTP(w, req)
	return w.status
}

type statusOnly struct {
	header http.Header
	status int
	wrote  bool
}

func (w *statusOnly) Header() http.Header { return w.header }
func (w *statusOnly) WriteHeader(s int) {
	if !w.wrote {
		w.status, w.wrote = s, true
	}
}
func (w *statusOnly) Write(p []byte) (int, error) { w.WriteHeader(http.StatusOK); return len(p), nil }
