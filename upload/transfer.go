package upload

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/rescalefs/rescalefs/internal/sha512x"
	"github.com/rescalefs/rescalefs/remote"
)

// transfer runs one attempt of u: check the data, then publish it in one POST or as a multipart upload.
func (e *Engine) transfer(ctx context.Context, u *upload) (remote.File, error) {
	e.mu.Lock()
	u.rec.State, u.sent, u.unsure = StateUploading, "", ""
	e.mu.Unlock()
	if err := e.verify(ctx, u); err != nil {
		return remote.File{}, err
	}
	r := e.snapshotRec(u)
	if r.PublishedSent {
		// An earlier attempt may have published it and died before journaling that: look first, so a
		// crash never makes two library files of one upload.
		if f, ok, err := e.lookEarlier(ctx, u, r); err != nil {
			return remote.File{}, err
		} else if ok {
			e.mu.Lock()
			u.sent = r.Name
			e.mu.Unlock()
			return f, nil
		}
	}
	if e.small(r.Size) {
		return e.sendSmall(ctx, u)
	}
	return e.sendMultipart(ctx, u)
}

func (e *Engine) small(size int64) bool {
	return e.o.SmallThreshold > 0 && size < e.o.SmallThreshold
}

// snapshotRec copies u's record.
func (e *Engine) snapshotRec(u *upload) record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return u.rec
}

// update changes u's record and journals it durably before returning. Once u is withdrawn (an attempt
// a cancel stopped waiting for), the record is its clean-up's: the change is kept in memory only (the
// clean-up reads it: a multipart upload to abort) and errWithdrawn ends the attempt.
func (e *Engine) update(u *upload, change func(r *record)) (record, error) {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	change(&u.rec)
	r, withdrawn := u.rec, u.withdrawn
	e.mu.Unlock()
	if withdrawn {
		return r, errWithdrawn
	}
	return r, e.j.save(&r)
}

// isWithdrawn: u's record belongs to its clean-up (cleanup.go); nothing else journals it.
func (e *Engine) isWithdrawn(u *upload) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return u.withdrawn
}

// verify makes sure the data is what the record says: on the first attempt it fixes size and sha512
// in the journal (before any byte is sent); after a restart it checks them once, so a staging file
// changed behind the engine's back is reported rather than published as something else.
func (e *Engine) verify(ctx context.Context, u *upload) error {
	e.mu.Lock()
	verified, r := u.verified, u.rec
	e.mu.Unlock()
	if verified {
		return nil
	}
	fi, err := os.Stat(r.Data)
	if err != nil {
		return fmt.Errorf("%w: staging data: %v", ErrDamaged, err)
	}
	if r.SHA512 != "" && fi.Size() != r.Size {
		return fmt.Errorf("%w: staging data is %d bytes, the journal says %d", ErrDamaged, fi.Size(), r.Size)
	}
	sum, n, err := HashFile(ctx, r.Data)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: reading staging data: %v", ErrDamaged, err)
	}
	switch {
	case r.SHA512 != "" && !r.SumFromWriter:
		if sum != r.SHA512 || n != r.Size {
			return fmt.Errorf("%w: staging data no longer has the journaled sha512", ErrDamaged)
		}
	case r.SHA512 != "" && sum == r.SHA512 && n == r.Size:
		// The writer's sum, now checked (after a restart, before anything more is sent).
		if _, err := e.update(u, func(r *record) { r.SumFromWriter = false }); err != nil {
			return err
		}
	default:
		// No sum yet, or a writer's sum the data does not have: the engine's own counts.
		if _, err := e.update(u, func(r *record) { r.SHA512, r.Size, r.SumFromWriter = sum, n, false }); err != nil {
			return err
		}
	}
	e.mu.Lock()
	u.verified = true
	e.mu.Unlock()
	return nil
}

// HashFile is the hex sha512 and length of a file, read in chunks (never whole in memory).
func HashFile(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha512x.New()
	n, err := io.CopyBuffer(h, &ctxReader{ctx: ctx, r: f}, make([]byte, 1<<20))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ctxReader stops a long local read when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// beginPublish marks u as being published (Rename now fails with ErrPublishing) and journals that a
// publishing request may reach the platform, with the name it carries. The publishing request itself
// runs under publishCtx.
func (e *Engine) beginPublish(u *upload) (record, error) {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	if u.cancelled || u.withdrawn {
		// Cancelled before its publishing request left: it never leaves (a cancel then knows for sure
		// that nothing of this attempt is published).
		r := u.rec
		e.mu.Unlock()
		return r, errWithdrawn
	}
	u.publishing, u.sent = true, u.rec.Name
	u.rec.PublishedSent = true
	if !slices.Contains(u.rec.Sent, u.rec.Name) {
		u.rec.Sent = append(u.rec.Sent, u.rec.Name)
	}
	r := u.rec
	e.mu.Unlock()
	return r, e.j.save(&r)
}

// refused books a refusal of u's publishing request (a 4xx): nothing was published, and no earlier
// request is left unknown either (transfer looked for them before this one was sent).
func (e *Engine) refused(u *upload, err error) {
	var ae *remote.APIError
	if !errors.As(err, &ae) || ae.Status >= 500 {
		return
	}
	_, _ = e.update(u, func(r *record) { r.PublishedSent, r.Sent = false, nil })
}

// publishCtx is the context of a publishing request: the engine's, which only Close ends, not the
// attempt's, which a cancel of the upload ends too. A request cut on its way may still publish the
// file, and then nobody knows the file's id; let through, it answers, and a cancelled upload's
// publication is deleted (attempt).
func (e *Engine) publishCtx() context.Context { return e.engineCtx() }

func (e *Engine) endPublish(u *upload) {
	e.mu.Lock()
	u.publishing = false
	e.mu.Unlock()
}

// sendSmall publishes the file in one POST /api/v2/files/contents/.
func (e *Engine) sendSmall(ctx context.Context, u *upload) (remote.File, error) {
	r, err := e.beginPublish(u)
	defer e.endPublish(u)
	if err != nil {
		return remote.File{}, err
	}
	f, err := os.Open(r.Data)
	if err != nil {
		return remote.File{}, fmt.Errorf("%w: staging data: %v", ErrDamaged, err)
	}
	defer f.Close()
	body := &partBody{r: f, plainLen: r.Size}
	u.inflight.Store(body, struct{}{})
	defer u.inflight.Delete(body)
	file, err := e.c.UploadSmall(e.publishCtx(), r.Name, body, r.Size, remote.TypeInput)
	if err != nil {
		e.refused(u, err)
		return remote.File{}, fmt.Errorf("upload %s: %w", r.Name, err)
	}
	u.confirmed.Store(r.Size)
	return file, nil
}

// findPublished looks in the library for the file an interrupted attempt may have published: same
// size and sha512 (and object, for a direct upload), uploaded after the upload was queued. It looks
// under the name sent, then, since the platform may store a name differently (and answered nothing
// this time), under the name's longest run of letters and digits (storedNameStem), for a name it
// may have stored ours as (storedAs): else a lost answer would publish the file twice.
func (e *Engine) findPublished(ctx context.Context, r *record) (remote.File, bool, error) {
	files, err := e.findPublications(ctx, r, r.Name)
	if err != nil || len(files) == 0 {
		return remote.File{}, false, err
	}
	return files[0], true, nil
}

// findPublications is every library file findPublished takes for a publication of r under name (the
// exact name's first), less the files r supersedes (stale publications of its own, known already)
// and those another of the names r's requests carried (Sent) matches exactly.
func (e *Engine) findPublications(ctx context.Context, r *record, name string) ([]remote.File, error) {
	searches := []string{name}
	if stem := storedNameStem(name); stem != name {
		searches = append(searches, stem)
	}
	var out []remote.File
	for i, search := range searches {
		files, err := e.c.LibraryFiles(ctx, search)
		if err != nil {
			return nil, fmt.Errorf("look for an earlier publication of %s: %w", name, err)
		}
		for _, f := range files {
			if i == 0 && f.Name != name || !storedAs(name, f.Name) || f.DecryptedSize != r.Size || f.SHA512() != r.SHA512 {
				continue
			}
			if r.ObjectKey != "" && r.ObjectDone && f.PathParts.Path != r.ObjectKey {
				continue
			}
			if !f.DateUploaded.IsZero() && f.DateUploaded.Before(r.Created.Add(-time.Minute)) {
				continue // an older upload of the same content, not ours
			}
			if slices.Contains(r.Supersedes, f.ID) || f.Name != name && slices.Contains(r.Sent, f.Name) {
				continue
			}
			if !slices.ContainsFunc(out, func(o remote.File) bool { return o.ID == f.ID }) {
				out = append(out, f)
			}
		}
	}
	return out, nil
}

// lookEarlier looks for what the publishing requests of u whose answers were lost (a crash, a cut
// connection) published: under its current name, the publication (returned); under a name the file
// has left since (renamed while a request was out, then a crash), stale publications, booked in
// Supersedes so that they are deleted once the current name is published. A multipart upload whose
// object a stale publication holds sends a new object: the stale file's deletion must not take the
// current one's data with it. The old object is booked in Dropped, deleted after the stale files (the
// platform may not delete an object with its file, and nothing else knows its key).
//
// Only a file that is certainly u's (ours) is booked for deletion; one that may be another tool's
// upload of the same bytes is left in the library and logged. A file taken for the publication that
// is not certainly u's is kept in u.unsure: nothing of the engine deletes it later either (a cancel
// or a rename racing the answer would).
func (e *Engine) lookEarlier(ctx context.Context, u *upload, r record) (remote.File, bool, error) {
	names := r.Sent
	if len(names) == 0 {
		names = []string{r.Name}
	}
	var stale, unsure []string
	var cur remote.File
	found, unsureHolds := false, false
	for _, name := range names {
		files, err := e.findPublications(ctx, &r, name)
		if err != nil {
			return remote.File{}, false, err
		}
		if name == r.Name {
			if len(files) > 0 {
				cur, found = files[0], true
			}
			continue
		}
		for _, f := range files {
			if ours(&r, f) {
				stale = append(stale, f.ID)
			} else {
				unsure = append(unsure, f.ID)
				e.keep(f.Name, f.ID, keptRenamed)
				unsureHolds = unsureHolds || r.ObjectKey != "" && f.PathParts.Path == r.ObjectKey
			}
		}
	}
	if len(unsure) > 0 {
		e.log.Warn("upload: files like the lost publication of an upload under a name it has left are in the library; "+
			"left there: nothing tells them from another tool's upload of the same file", "upload", u.id,
			"name", r.Name, "files", unsure)
	}
	e.mu.Lock()
	u.unsure = ""
	if found && !ours(&r, cur) {
		u.unsure = cur.ID
	}
	e.mu.Unlock()
	if len(stale) == 0 && (found || len(unsure) == 0) {
		return cur, found, nil
	}
	if len(stale) > 0 {
		e.log.Info("upload: found publications under names the file has left; deleted once it is published", "upload", u.id,
			"name", r.Name, "files", stale)
	}
	_, err := e.update(u, func(r *record) {
		for _, id := range stale {
			if !slices.Contains(r.Supersedes, id) {
				r.Supersedes = append(r.Supersedes, id)
			}
		}
		if !found {
			r.PublishedSent, r.Sent = false, nil
			if r.ObjectDone {
				// Forgotten, the object would stay in the storage for good: it is deleted after the
				// stale files holding it, unless a file that is not certainly ours holds it (kept).
				if !unsureHolds {
					r.dropObject()
				}
				r.S3UploadID, r.ObjectDone = "", false
			}
		}
	})
	if err != nil {
		return remote.File{}, false, err
	}
	return cur, found, nil
}

// ours reports whether library file f is certainly the publication of a request of r: it holds the
// object r's direct upload stored, whose key rescalefs chose (random: rescale-api.md, "Uploading").
// A small upload's request (POST /api/v2/files/contents/) carries only the name, the type and the
// bytes; the platform chooses where it stores them and their key, so its publication cannot be told
// from another tool's upload of the same bytes under the same name, and is never taken for ours where
// taking it would delete it.
func ours(r *record, f remote.File) bool {
	return r.ObjectKey != "" && r.ObjectDone && f.PathParts.Path == r.ObjectKey &&
		(r.Bucket == "" || f.PathParts.Container == r.Bucket)
}

// storedAs reports whether the platform may have stored a file sent as sent under the name stored
// [I]: the same letters and digits, in order, once percent-escapes (%0A) are taken out of stored.
func storedAs(sent, stored string) bool {
	return alnum(sent) == alnum(percentEscape.ReplaceAllString(stored, ""))
}

var percentEscape = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

func alnum(s string) string {
	return strings.Map(func(c rune) rune {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			return c
		}
		return -1
	}, s)
}

// storedNameStem is what a name the platform stores differently surely still contains: its longest
// run of letters and digits [I] (how the platform changes a name it cannot keep is not documented;
// the multipart form encodes a newline as %0A). "" (search everything) when the name has none.
func storedNameStem(name string) string {
	best, run := "", []rune{}
	flush := func() {
		if len(string(run)) > len(best) {
			best = string(run)
		}
		run = run[:0]
	}
	for _, c := range name {
		if unicode.IsLetter(c) || unicode.IsDigit(c) {
			run = append(run, c)
			continue
		}
		flush()
	}
	flush()
	return best
}

// partBody is a part (or a small file) being sent: it counts the bytes the transport has read, for
// progress. A Seek (the SDK rewinds after hashing the payload or before a retry) resets the count.
type partBody struct {
	r        io.ReadSeeker
	n        atomic.Int64
	plainLen int64 // plaintext bytes this body stands for
}

func (b *partBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *partBody) Seek(off int64, whence int) (int64, error) {
	pos, err := b.r.Seek(off, whence)
	if err == nil {
		b.n.Store(pos)
	}
	return pos, err
}

// plain is the plaintext progress this body stands for.
func (b *partBody) plain() int64 { return min(b.n.Load(), b.plainLen) }

// firstError keeps the first error of a pipeline.
type firstError struct {
	mu  sync.Mutex // guards err
	err error
}

func (f *firstError) set(err error) {
	f.mu.Lock()
	if f.err == nil {
		f.err = err
	}
	f.mu.Unlock()
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}
