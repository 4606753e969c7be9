package emulator

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/rescalefs/rescalefs/remote/cbc"
)

// plainChunk is how much plaintext /contents/ decrypts at a time: a ranged read costs at most one chunk of
// memory, whatever the size of the file or of the range.
const plainChunk = 1 << 20

// storedFile finds a file visible now, not deleted, with its stored object; otherwise it answers 404 and
// reports false.
func (e *Emulator) storedFile(w http.ResponseWriter, id string) (*fileRecord, *objectRecord, bool) {
	now := e.now()
	e.mu.RLock()
	f, _, ok := e.visibleFileLocked(id, now)
	var obj *objectRecord
	if ok {
		obj = e.st.objects[f.ObjectKey]
	}
	e.mu.RUnlock() // before writing: a slow client must not hold the lock
	if !ok || f.Deleted || obj == nil {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return nil, nil, false
	}
	return f, obj, true
}

func (e *Emulator) serveContents(w http.ResponseWriter, r *http.Request, id string) {
	f, obj, ok := e.storedFile(w, id)
	if !ok {
		return
	}
	e.servePlain(w, r, f, obj, f.Size)
}

// servePlain answers a GET or HEAD of the plaintext of f, of which the first size bytes exist (all of
// them, or a running job's growing prefix), honouring a single Range: 206 with Content-Range, an end past
// EOF clamped, 416 for a start past EOF, 200 without a Range or with one it does not understand.
func (e *Emulator) servePlain(w http.ResponseWriter, r *http.Request, f *fileRecord, obj *objectRecord, size int64) {
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	off, n, status := int64(0), size, http.StatusOK
	if spec := r.Header.Get("Range"); spec != "" {
		start, end, ok, satisfiable := parseRange(spec, size)
		switch {
		case ok && !satisfiable:
			h.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			writeDetail(w, http.StatusRequestedRangeNotSatisfiable, "Requested range not satisfiable.")
			return
		case ok:
			off, n, status = start, end-start+1, http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, size))
		}
	}
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	w.WriteHeader(status)
	if r.Method == http.MethodHead || n == 0 {
		return
	}
	if err := e.copyPlain(w, f, obj, off, n); err != nil && !errors.Is(err, errCut) && r.Context().Err() == nil {
		// The status is sent: the client sees a short body, which it must treat as an error. A client
		// that left (the context is done) is no fault of ours.
		e.log.Warn("emulator: contents", "file", f.ID, "off", off, "n", n, "err", err)
	}
}

// parseRange parses a single "bytes=" range against size. ok is false for a header to ignore (malformed,
// multi-range, another unit); satisfiable is false for a range starting at or past EOF.
func parseRange(spec string, size int64) (start, end int64, ok, satisfiable bool) {
	v, found := strings.CutPrefix(strings.TrimSpace(spec), "bytes=")
	if !found || strings.Contains(v, ",") {
		return 0, 0, false, false
	}
	a, b, found := strings.Cut(strings.TrimSpace(v), "-")
	if !found {
		return 0, 0, false, false
	}
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == "" { // suffix: the last b bytes
		k, err := strconv.ParseInt(b, 10, 64)
		if err != nil || k < 0 {
			return 0, 0, false, false
		}
		if k == 0 || size == 0 {
			return 0, 0, true, false
		}
		return max(0, size-k), size - 1, true, true
	}
	s, err := strconv.ParseInt(a, 10, 64)
	if err != nil || s < 0 {
		return 0, 0, false, false
	}
	end = size - 1
	if b != "" {
		x, err := strconv.ParseInt(b, 10, 64)
		if err != nil || x < s {
			return 0, 0, false, false
		}
		end = min(x, size-1)
	}
	if s >= size {
		return 0, 0, true, false
	}
	return s, end, true, true
}

// objectIV returns the IV an object's metadata carries (base64, as Rescale's clients store it).
func objectIV(obj *objectRecord) ([]byte, error) {
	iv, err := base64.StdEncoding.DecodeString(obj.Meta[metaIV])
	if err != nil || len(iv) != cbc.BlockSize {
		return nil, fmt.Errorf("object %s: no valid iv metadata", obj.Key)
	}
	return iv, nil
}

// copyPlain writes plaintext [off, off+n) of f to dst, decrypting chunk by chunk from only the
// ciphertext blocks each chunk needs (cbc.CipherRange): never the whole file.
func (e *Emulator) copyPlain(dst io.Writer, f *fileRecord, obj *objectRecord, off, n int64) error {
	iv, err := objectIV(obj)
	if err != nil {
		return err
	}
	or, err := openObject(e.blobs, obj)
	if err != nil {
		return err
	}
	defer or.Close()
	// c plaintext bytes span at most c+30 bytes of whole blocks, plus the block before them as IV: a
	// small range allocates small.
	ct := make([]byte, min(n, plainChunk)+3*cbc.BlockSize)
	for n > 0 {
		c := min(n, plainChunk)
		cs, ce := cbc.CipherRange(off, c, f.Size)
		buf := ct[:ce-cs]
		if m, err := or.ReadAt(buf, cs); m < len(buf) {
			return fmt.Errorf("read object %s [%d,%d): %w", obj.Key, cs, ce, err)
		}
		plain, err := cbc.DecryptRange(f.Key, iv, f.Size, off, c, buf)
		if err != nil {
			return fmt.Errorf("decrypt %s [%d,%d): %w", f.ID, off, off+c, err)
		}
		if _, err := dst.Write(plain); err != nil {
			return err
		}
		off, n = off+c, n-c
	}
	return nil
}

// Plaintext returns the stored plaintext of a file (a test helper: what any read must return).
func (e *Emulator) Plaintext(fileID string) (io.ReadCloser, int64, error) {
	e.mu.RLock()
	f, ok := e.st.files[fileID]
	var obj *objectRecord
	if ok {
		obj = e.st.objects[f.ObjectKey]
	}
	e.mu.RUnlock()
	if !ok || obj == nil {
		return nil, 0, fmt.Errorf("plaintext %s: %w", fileID, ErrNotFound)
	}
	iv, err := objectIV(obj)
	if err != nil {
		return nil, 0, err
	}
	or, err := openObject(e.blobs, obj)
	if err != nil {
		return nil, 0, err
	}
	dr, err := cbc.NewDecryptingReader(io.NewSectionReader(or, 0, or.Size()), f.Key, iv, f.Size)
	if err != nil {
		or.Close()
		return nil, 0, err
	}
	return struct {
		io.Reader
		io.Closer
	}{dr, or}, f.Size, nil
}
