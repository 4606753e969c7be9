package remote

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"sync"
	"time"
)

// directRetryAfter is how long a file (or a storage whose credentials failed) is read through
// /contents/ after the direct path failed for it, before direct is tried again: a broken storage path
// should cost one failed attempt per file now and then, not one per block.
const directRetryAfter = time.Minute

// maxKnownFiles bounds DirectSource's table of file metadata; past it the table is dropped and refilled
// (a miss costs one GetFile).
const maxKnownFiles = 1 << 17

// DirectSourceOptions configure a DirectSource.
type DirectSourceOptions struct {
	// S3 is the template for the per-storage S3 clients (HTTP client, attempts); its Credentials,
	// Region and Endpoint are set per storage.
	S3     S3Options
	Logger *slog.Logger // nil = the Client's
	Now    func() time.Time
}

// DirectSource reads file ranges straight from storage when it can and through the API's /contents/
// when it cannot (not S3, no credentials, storage failing). It implements the cache's Source interface;
// object ids are file ids. Reads of files whose metadata was not Register'ed cost one GetFile first.
//
// Lock order: mu is a leaf; no call to the API or storage is made while holding it.
type DirectSource struct {
	c   *Client
	o   DirectSourceOptions
	log *slog.Logger
	now func() time.Time

	// ctx ends with Close: storage clients being created then give up, and creating ends (creating
	// counts the creations running).
	ctx      context.Context
	cancel   context.CancelFunc
	creating sync.WaitGroup

	mu       sync.Mutex                  // guards the fields below
	closed   bool                        // Close was called: no storage client is created any more
	files    map[string]File             // file id -> metadata
	stores   map[string]*storageEntry    // storage id -> its S3 client (or why it has none)
	apiUntil map[string]time.Time        // file id -> read through the API until then
	logged   map[string]bool             // file ids whose direct failure was logged
	flights  map[string]*storageCreation // storage id -> creation in progress
}

type storageEntry struct {
	s3        *S3Client
	failUntil time.Time // after a failed creation: no retry before then
}

// storageCreation lets concurrent first reads of one storage share one credentials request.
type storageCreation struct {
	done chan struct{}
	s3   *S3Client
	err  error
}

// NewDirectSource reads through c, going direct to storage when possible.
func NewDirectSource(c *Client, o DirectSourceOptions) *DirectSource {
	d := &DirectSource{c: c, o: o, log: o.Logger, now: o.Now,
		files: map[string]File{}, stores: map[string]*storageEntry{}, apiUntil: map[string]time.Time{},
		logged: map[string]bool{}, flights: map[string]*storageCreation{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if d.log == nil {
		d.log = c.log
	}
	if d.now == nil {
		d.now = time.Now
	}
	return d
}

// Register records the metadata of files about to be read (from a listing), sparing a GetFile each.
// The first file listed in a storage starts that storage's client (its credentials request) in the
// background: a listing comes before the reads, and the first read then does not wait for one more
// API round trip before its first storage request.
func (d *DirectSource) Register(files ...File) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.files)+len(files) > maxKnownFiles {
		clear(d.files)
	}
	for _, f := range files {
		if f.ID == "" {
			continue
		}
		d.files[f.ID] = f
		if directable(f) {
			d.startCreateLocked(f.Storage)
		}
	}
}

// Close stops creating storage clients, ends the creations in flight and waits for them: after it
// returns, no credentials request of this source is made or in progress. Reads must have ended.
func (d *DirectSource) Close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.creating.Wait()
}

// startCreateLocked starts creating st's client unless it exists, is being created, failed a moment
// ago or the source is closed, and returns the creation in flight (nil when there is none). d.mu must
// be held.
func (d *DirectSource) startCreateLocked(st Storage) *storageCreation {
	if e, ok := d.stores[st.ID]; d.closed || ok && (e.s3 != nil || d.now().Before(e.failUntil)) {
		return nil
	}
	fl, ok := d.flights[st.ID]
	if !ok {
		fl = &storageCreation{done: make(chan struct{})}
		d.flights[st.ID] = fl
		d.creating.Add(1)
		go d.create(st, fl)
	}
	return fl
}

// File returns the metadata of id: registered, or fetched with GetFile and remembered.
func (d *DirectSource) File(ctx context.Context, id string) (File, error) {
	d.mu.Lock()
	f, ok := d.files[id]
	d.mu.Unlock()
	if ok {
		return f, nil
	}
	f, err := d.c.GetFile(ctx, id)
	if err != nil {
		return File{}, err
	}
	d.Register(f)
	return f, nil
}

// ReadRange fills p with plaintext bytes [off, off+len(p)) of file objectID: from storage, or from
// /contents/ when the direct path fails (logged once per file). Both paths share one budget of the
// network policy, so a platform that is gone fails the read once, not once per path.
func (d *DirectSource) ReadRange(ctx context.Context, objectID string, off int64, p []byte) error {
	return d.ReadRangeVec(ctx, objectID, off, [][]byte{p})
}

// ReadRangeVec is ReadRange for a destination spread over several buffers (one per cache block),
// filled in order from one ranged request, direct or through /contents/, under one budget.
func (d *DirectSource) ReadRangeVec(ctx context.Context, objectID string, off int64, bufs [][]byte) error {
	return d.ReadRangeVecSum(ctx, objectID, off, bufs, nil)
}

// ReadRangeVecSum is ReadRangeVec that also sets sums[i] (when sums is not nil) to the CRC-32C of
// bufs[i] (cache.ChecksumSource): computed as storage bytes are decrypted, or over the buffers after a
// read through /contents/.
func (d *DirectSource) ReadRangeVecSum(ctx context.Context, objectID string, off int64, bufs [][]byte, sums []uint32) error {
	var directOut bool // the budget ran out on the direct path, before the fallback could start
	err := d.c.readBudget(ctx, objectID, func(ctx context.Context) error {
		return d.readRangeVec(ctx, objectID, off, bufs, sums, &directOut)
	})
	if directOut && errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
		// Storage silent for the whole budget is a failing direct path like any other: the file's
		// next reads go through /contents/ (a platform gone altogether fails those as it would have).
		// Without this, every read of the file spent its budget on the same silent storage.
		d.noteFailure(objectID, err)
	}
	return err
}

func (d *DirectSource) readRangeVec(ctx context.Context, objectID string, off int64, bufs [][]byte, sums []uint32, directOut *bool) error {
	err := d.readDirect(ctx, objectID, off, bufs, sums)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		*directOut = true
		return err
	}
	// A range outside the file is the caller's mistake: the API would say the same.
	if errors.Is(err, ErrRange) || errors.Is(err, errOutOfFile) {
		return err
	}
	if !errors.Is(err, errDirectUnavailable) {
		d.noteFailure(objectID, err)
	}
	if err := d.c.ReadRangeVec(ctx, objectID, off, bufs); err != nil {
		return err
	}
	if sums != nil {
		for i, b := range bufs {
			sums[i] = crc32.Checksum(b, castagnoli)
		}
	}
	return nil
}

// errOutOfFile marks a range that reaches past the file's end, as the metadata says.
var errOutOfFile = errors.New("range past the end of the file")

func (d *DirectSource) readDirect(ctx context.Context, id string, off int64, bufs [][]byte, sums []uint32) error {
	n := int64(scatter(bufs).size())
	d.mu.Lock()
	until, off2api := d.apiUntil[id]
	d.mu.Unlock()
	if off2api && d.now().Before(until) {
		return errDirectUnavailable
	}
	f, err := d.File(ctx, id)
	if err != nil {
		// Without metadata there is no key; the API may still serve the bytes.
		return fmt.Errorf("%w: %w", errDirectUnavailable, err)
	}
	if off+n > f.DecryptedSize && off < f.DecryptedSize {
		return fmt.Errorf("read %s [%d,%d): %w: %w: the file has %d bytes", id, off, off+n, ErrShortBody, errOutOfFile, f.DecryptedSize)
	}
	if !directable(f) {
		return errDirectUnavailable
	}
	s, err := d.store(ctx, f.Storage)
	if err != nil {
		return err
	}
	return s.ReadRangeDirectVecSum(ctx, f, off, bufs, sums)
}

// directable reports whether f's metadata allows a storage read at all.
func directable(f File) bool {
	return f.Storage.StorageType == StorageTypeS3 && f.PathParts.Path != "" && f.EncodedEncryptionKey != ""
}

// Splittable reports whether a block of file id may be fetched as several concurrent requests
// (cache.SplitSource): yes when it is read from storage, whose requests no limit counts; no when it
// goes through /contents/ (the file is not on S3 or has no key, its storage read failed a moment ago,
// or its storage has no client), where each request counts against the platform's limit. A file
// whose metadata is not known yet is taken to be on storage, as most are.
func (d *DirectSource) Splittable(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if until, ok := d.apiUntil[id]; ok && d.now().Before(until) {
		return false
	}
	f, ok := d.files[id]
	if !ok {
		return true
	}
	if !directable(f) {
		return false
	}
	e, ok := d.stores[f.Storage.ID]
	return !ok || e.s3 != nil || !d.now().Before(e.failUntil)
}

// store returns the S3 client of a storage, creating it (one credentials request, shared by concurrent
// callers) on first use.
func (d *DirectSource) store(ctx context.Context, st Storage) (*S3Client, error) {
	d.mu.Lock()
	if e, ok := d.stores[st.ID]; ok {
		if e.s3 != nil {
			d.mu.Unlock()
			return e.s3, nil
		}
		if d.now().Before(e.failUntil) {
			d.mu.Unlock()
			return nil, errDirectUnavailable
		}
	}
	fl := d.startCreateLocked(st)
	d.mu.Unlock()
	if fl == nil { // closed
		return nil, errDirectUnavailable
	}
	select {
	case <-fl.done:
		if fl.err != nil {
			return nil, fmt.Errorf("%w: %w", errDirectUnavailable, fl.err)
		}
		return fl.s3, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// create builds a storage's client on a context of its own: one reader giving up must not fail it for
// the others waiting.
func (d *DirectSource) create(st Storage, fl *storageCreation) {
	defer d.creating.Done()
	ctx, cancel := context.WithTimeout(d.ctx, 2*time.Minute)
	defer cancel()
	o := d.o.S3
	o.Credentials = &CredentialsRequest{Storage: &StorageRef{ID: st.ID, StorageType: st.StorageType}}
	o.Region = st.ConnectionSettings.Region
	o.Endpoint = st.ConnectionSettings.Endpoint
	fl.s3, fl.err = d.c.NewS3Client(ctx, o)
	d.mu.Lock()
	delete(d.flights, st.ID)
	if fl.err != nil {
		d.stores[st.ID] = &storageEntry{failUntil: d.now().Add(directRetryAfter)}
		if d.ctx.Err() == nil { // not a creation Close ended
			d.log.Warn("direct storage reads unavailable, reading through the API", "storage", st.ID, "err", fl.err)
		}
	} else {
		d.stores[st.ID] = &storageEntry{s3: fl.s3}
	}
	d.mu.Unlock()
	close(fl.done)
}

func (d *DirectSource) noteFailure(id string, err error) {
	d.mu.Lock()
	d.apiUntil[id] = d.now().Add(directRetryAfter)
	if len(d.apiUntil) > maxKnownFiles {
		clear(d.apiUntil)
	}
	first := !d.logged[id]
	if first {
		if len(d.logged) > maxKnownFiles {
			clear(d.logged)
		}
		d.logged[id] = true
	}
	d.mu.Unlock()
	if first {
		d.log.Warn("direct storage read failed, reading through the API", "file", id, "err", err)
	}
}
