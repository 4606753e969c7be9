package download

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/internal/sha512x"
)

// readSize is one read of a download: sequential reads this large let the cache's read-ahead grow to its
// full window, and bound what one file holds in memory.
const readSize = 4 << 20

// errMismatch is wrapped when a downloaded file's size or sha512 differs from the platform's.
var errMismatch = errors.New("downloaded file does not match the platform's sha512")

// file brings one output up to date: nothing to do when the final file is already complete, else a
// download into its partial file (resumed when there is one), verified, then renamed into place.
func (r *jobRun) file(it item) error {
	d := r.d
	final := path.Join(r.j.id, it.rel)
	want, size := it.f.SHA512(), it.f.DecryptedSize
	if done, err := r.complete(it, final); err != nil || done {
		return err
	}
	if err := d.root.MkdirAll(path.Dir(final), 0o777); err != nil {
		return diskErr(fmt.Errorf("%s: create its folder: %w", it.rel, err))
	}
	partial := path.Join(r.j.id, partialPath(it.rel))
	d.setCurrent(r.j, it.rel, size, 0)
	defer d.clearCurrent(r.j, it.rel)

	resumed, err := r.fetch(it, partial)
	if resumed && errors.Is(err, errMismatch) {
		// The kept bytes were wrong (a crash can leave garbage past what was written): once from 0.
		d.log.Warn("automatic downloads: resumed file did not match; downloading it again from the start",
			"job", r.j.id, "path", it.rel)
		d.cache.Drop(it.f.ID) // in case the blocks were the wrong part
		_, err = r.fetch(it, partial)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", it.rel, err)
	}
	if !it.f.DateUploaded.IsZero() {
		if err := d.root.Chtimes(partial, d.now(), it.f.DateUploaded.Time); err != nil {
			return diskErr(fmt.Errorf("%s: %w", it.rel, err))
		}
	}
	if err := d.root.Chmod(partial, d.fileMode); err != nil {
		return fmt.Errorf("%s: %w", it.rel, err)
	}
	if err := d.root.Rename(partial, final); err != nil {
		return diskErr(fmt.Errorf("%s: %w", it.rel, err))
	}
	syncDir(d.root, path.Dir(final))
	fi, err := d.root.Lstat(final)
	if err != nil {
		return fmt.Errorf("%s: %w", it.rel, err)
	}
	if want == "" {
		d.log.Warn("automatic downloads: the platform gave no sha512; file checked by size only", "job", r.j.id, "path", it.rel)
	}
	r.rec.put(it.rel, doneRecord{ID: it.f.ID, Size: size, MTime: fi.ModTime(), SHA512: want}, d.now())
	d.fileFetched(r.j)
	return nil
}

// complete says whether final already holds the file: same size, and the same sha512 as recorded with
// the same mtime, else as hashed now (then recorded).
func (r *jobRun) complete(it item, final string) (bool, error) {
	d := r.d
	want, size := it.f.SHA512(), it.f.DecryptedSize
	fi, err := d.root.Lstat(final)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() != size {
		return false, nil // missing, a symlink or folder, or another size: (re)download it over
	}
	if rec, ok := r.rec.get(it.rel); ok && rec.Size == size && rec.MTime.Equal(fi.ModTime()) &&
		(want != "" && rec.SHA512 == want || want == "" && rec.ID == it.f.ID) {
		d.addDone(r.j, size)
		d.fileDone(r.j)
		return true, nil
	}
	if want == "" {
		return false, nil // no checksum to compare a file we did not record with
	}
	f, err := d.root.Open(final)
	if err != nil {
		return false, nil
	}
	h := sha512x.New()
	_, err = io.Copy(h, ctxReader{r.ctx, f})
	f.Close()
	if err != nil {
		if r.ctx.Err() != nil {
			return false, r.ctx.Err()
		}
		return false, nil
	}
	if hex.EncodeToString(h.Sum(nil)) != want {
		return false, nil
	}
	r.rec.put(it.rel, doneRecord{ID: it.f.ID, Size: size, MTime: fi.ModTime(), SHA512: want}, d.now())
	d.addDone(r.j, size)
	d.fileDone(r.j)
	return true, nil
}

// fetch fills the partial file up to the file's size through the cache and verifies it. Bytes already
// in the partial file are kept (resumed is then true) and hashed, so only the missing tail is fetched.
// The partial file is fsynced when it matches; when it does not, it is emptied.
func (r *jobRun) fetch(it item, partial string) (resumed bool, err error) {
	d := r.d
	want, size := it.f.SHA512(), it.f.DecryptedSize
	f, err := d.root.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return false, diskErr(fmt.Errorf("open %s: %w", partialSuffix, err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	have := fi.Size()
	if have > size { // not a prefix of this file: another version's
		have = 0
	}
	if err := f.Truncate(have); err != nil {
		return false, diskErr(err)
	}
	h := sha512x.New()
	if have > 0 {
		if _, err := io.Copy(h, ctxReader{r.ctx, io.NewSectionReader(f, 0, have)}); err != nil {
			return false, fmt.Errorf("read back the partial file: %w", err)
		}
		d.addDone(r.j, have)
		d.setCurrent(r.j, it.rel, size, have)
	}
	resumed = have > 0
	// The cache checks the whole-file sha512 only of a read from offset 0; a resumed file is checked
	// here, against the hash of the kept bytes and the new ones.
	expect := want
	if resumed {
		expect = ""
	}
	rd := d.cache.NewReader(cache.Object{ID: it.f.ID, Size: size}, expect)
	defer rd.Close()
	n, err := r.copy(rd, f, h, it, have, size)
	if err != nil && !errors.Is(err, cache.ErrChecksumMismatch) {
		return resumed, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if err != nil || n != size || want != "" && sum != want {
		if terr := f.Truncate(0); terr != nil {
			d.log.Warn("automatic downloads: cannot empty a wrong partial file", "path", partial, "err", terr)
		}
		d.addDone(r.j, -n) // those bytes are no longer done
		return resumed, fmt.Errorf("%w: %d bytes, want %d; sha512 %s, want %s", errMismatch, n, size, sum, want)
	}
	if err := f.Sync(); err != nil {
		return resumed, diskErr(fmt.Errorf("fsync: %w", err))
	}
	if err := f.Close(); err != nil {
		return resumed, diskErr(fmt.Errorf("close: %w", err))
	}
	return resumed, nil
}

// copy reads [off, size) of the object sequentially into f at the same offsets, hashing it, and returns
// the file's length reached. A checksum mismatch found by the cache comes back with the bytes read.
func (r *jobRun) copy(rd *cache.Reader, f *os.File, h hash.Hash, it item, off, size int64) (int64, error) {
	d := r.d
	buf := make([]byte, min(readSize, max(size-off, 1)))
	for off < size {
		n, err := rd.ReadAt(r.ctx, buf[:min(int64(len(buf)), size-off)], off)
		if n > 0 {
			if _, werr := d.writeAt(f, buf[:n], off); werr != nil {
				return off, diskErr(fmt.Errorf("write: %w", werr))
			}
			h.Write(buf[:n])
			off += int64(n)
			d.addFetched(r.j, it.rel, int64(n), off)
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			if off < size {
				return off, fmt.Errorf("read: the file ended at %d of %d bytes", off, size)
			}
		default:
			if ctxErr := context.Cause(r.ctx); ctxErr != nil && !errors.Is(err, cache.ErrChecksumMismatch) {
				return off, ctxErr
			}
			return off, fmt.Errorf("read at %d: %w", off, err)
		}
		if n == 0 && err == nil {
			return off, fmt.Errorf("read at %d: no progress", off)
		}
	}
	return off, nil
}

// syncDir fsyncs a folder so a rename in it survives a crash. Best effort: some file systems refuse.
func syncDir(root *os.Root, dir string) {
	f, err := root.Open(dir)
	if err != nil {
		return
	}
	_ = f.Sync()
	f.Close()
}

// ctxReader stops a long local read (hashing a multi-GiB file) when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Progress bookkeeping; each takes Downloader.mu briefly.

func (d *Downloader) setCurrent(j *job, rel string, size, done int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if j.progress.current == nil {
		j.progress.current = map[string]*FileProgress{}
	}
	j.progress.current[rel] = &FileProgress{Path: rel, Size: size, Done: done}
}

func (d *Downloader) clearCurrent(j *job, rel string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(j.progress.current, rel)
}

func (d *Downloader) addDone(j *job, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	j.progress.bytesDone += n
}

func (d *Downloader) addFetched(j *job, rel string, n, fileDone int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := &j.progress
	p.bytesDone += n
	d.totals.Bytes += n
	p.rate.add(n, d.now())
	if c := p.current[rel]; c != nil {
		c.Done = fileDone
	}
}

func (d *Downloader) fileDone(j *job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	j.progress.filesDone++
}

// fileFetched is fileDone for a file downloaded now (not found complete): it counts in the totals.
func (d *Downloader) fileFetched(j *job) {
	d.mu.Lock()
	defer d.mu.Unlock()
	j.progress.filesDone++
	d.totals.Files++
}
