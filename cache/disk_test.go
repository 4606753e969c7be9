package cache

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

func diskOptions(t *testing.T, dir string) Options {
	opts := testOptions(t)
	opts.DiskDir = dir
	opts.MemoryBytes = -1 // so reads go to disk
	return opts
}

func cacheFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && !strings.HasPrefix(e.Name(), tmpPrefix) {
			files = append(files, p)
		}
		return nil
	})
	return files
}

func TestDiskCorruptBlockRefetched(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(t *testing.T, path string)
	}{
		{"flip payload byte", func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			b[diskPage+10] ^= 0xff // a payload byte (the end of the file may be padding)
			os.WriteFile(p, b, 0o600)
		}},
		{"flip header byte", func(t *testing.T, p string) {
			b, _ := os.ReadFile(p)
			b[20] ^= 0x01
			os.WriteFile(p, b, 0o600)
		}},
		{"truncate", func(t *testing.T, p string) {
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}},
		{"empty", func(t *testing.T, p string) { os.Truncate(p, 0) }},
	}
	for _, compressible := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(tt.name+map[bool]string{true: "/zstd", false: "/raw"}[compressible], func(t *testing.T) {
				dir := t.TempDir()
				src := newFake()
				obj := src.add("obj", testBS+500)
				if compressible {
					obj = src.put("obj", bytes.Repeat([]byte("rescale "), int(obj.Size)/8))
				}
				want := src.objects["obj"]
				c1 := newTestCache(t, src, diskOptions(t, dir))
				p := make([]byte, obj.Size)
				if _, err := c1.ReadAt(context.Background(), obj, p, 0); err != nil {
					t.Fatal(err)
				}
				settle(c1)
				c1.Close()
				files := cacheFiles(t, dir)
				if len(files) != 2 {
					t.Fatalf("%d cache files, want 2", len(files))
				}
				if compressible {
					if fi, _ := os.Stat(files[0]); fi.Size() > testBS/4 {
						t.Fatalf("compressible block stored as %d bytes", fi.Size())
					}
				}
				for _, f := range files {
					tt.corrupt(t, f)
				}
				src.reset()
				c2 := newTestCache(t, src, diskOptions(t, dir))
				clear(p)
				if _, err := c2.ReadAt(context.Background(), obj, p, 0); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p, want) {
					t.Fatal("corrupt block returned")
				}
				if n := src.numCalls(); n != 1 {
					t.Fatalf("%d calls, want 1 refetch of both blocks", n)
				}
				if s := c2.Stats(); s.DiskCorrupt != 2 {
					t.Fatalf("DiskCorrupt=%d, want 2", s.DiskCorrupt)
				}
				settle(c2)
				// The refetched blocks were stored again, intact.
				src.reset()
				c2.Close()
				c3 := newTestCache(t, src, diskOptions(t, dir))
				if _, err := c3.ReadAt(context.Background(), obj, p, 0); err != nil || src.numCalls() != 0 {
					t.Fatalf("err=%v calls=%d", err, src.numCalls())
				}
			})
		}
	}
}

func TestDiskLRUEviction(t *testing.T) {
	dir := t.TempDir()
	src := newFake()
	obj := src.add("obj", 10*testBS)
	opts := diskOptions(t, dir)
	opts.DiskBytes = 3*diskFileSize(testBS) + testBS/2 // room for 3 blocks
	c := newTestCache(t, src, opts)
	p := make([]byte, 100)
	for i := range int64(10) {
		if _, err := c.ReadAt(context.Background(), obj, p, i*testBS); err != nil {
			t.Fatal(err)
		}
		settle(c)
		s := c.Stats()
		if s.DiskBytes > opts.DiskBytes {
			t.Fatalf("disk use %d > %d", s.DiskBytes, opts.DiskBytes)
		}
	}
	// Touch block 7 so it is the most recently used, then add one more.
	src.reset()
	if _, err := c.ReadAt(context.Background(), obj, p, 7*testBS); err != nil || src.numCalls() != 0 {
		t.Fatalf("block 7 should be on disk: err=%v calls=%d", err, src.numCalls())
	}
	if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil {
		t.Fatal(err)
	}
	settle(c)
	var total int64
	files := cacheFiles(t, dir)
	for _, f := range files {
		fi, _ := os.Stat(f)
		total += fi.Size()
	}
	if len(files) != 3 || total > opts.DiskBytes {
		t.Fatalf("%d files, %d bytes on disk (budget %d)", len(files), total, opts.DiskBytes)
	}
	for _, idx := range []int64{7, 0, 9} { // most recent three
		if !c.disk.has(obj, testBS, idx) {
			t.Errorf("block %d evicted, want kept", idx)
		}
	}
	if s := c.Stats(); s.DiskBlocks != 3 {
		t.Fatalf("DiskBlocks %d", s.DiskBlocks)
	}
}

func TestDiskSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	src := newFake()
	obj := src.add("obj/with:odd chars", 7*testBS+3)
	c1 := newTestCache(t, src, diskOptions(t, dir))
	r := c1.NewReader(obj, "")
	if _, err := readAll(t, r, obj.Size, 64<<10); err != nil {
		t.Fatal(err)
	}
	settle(c1)
	c1.Close()
	// Permissions: our sub-directories 0700, files 0600 (t.TempDir made dir).
	for _, f := range cacheFiles(t, dir) {
		fi, _ := os.Stat(f)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode())
		}
		di, _ := os.Stat(filepath.Dir(f))
		if di.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v", filepath.Dir(f), di.Mode())
		}
	}
	src.reset()
	c2 := newTestCache(t, src, diskOptions(t, dir))
	r2 := c2.NewReader(obj, "")
	got, err := readAll(t, r2, obj.Size, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	settle(c2)
	if !bytes.Equal(got, src.objects[obj.ID]) {
		t.Fatal("bytes differ")
	}
	if n := src.numCalls(); n != 0 {
		t.Fatalf("%d Source calls after restart, want 0", n)
	}
	if s := c2.Stats(); s.DiskHits != 8 {
		t.Fatalf("DiskHits %d, want 8", s.DiskHits)
	}
}

// A ChecksumSource's per-block CRC-32C is the one the disk tier keeps (it is not computed again): with
// right sums a fresh cache reads every block back from disk; with wrong ones every block read back is
// found corrupt and fetched again, never served.
func TestChecksumSourceSumsKeptOnDisk(t *testing.T) {
	for _, tc := range []struct {
		name string
		skew uint32
	}{{"right sums", 0}, {"wrong sums", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := newFake()
			obj := f.add("obj", 8*testBS+5)
			src := sumSource{f, tc.skew}
			c1 := newTestCache(t, src, diskOptions(t, dir))
			if _, err := readAll(t, c1.NewReader(obj, ""), obj.Size, 64<<10); err != nil {
				t.Fatal(err)
			}
			settle(c1)
			c1.Close()
			f.reset()
			c2 := newTestCache(t, src, diskOptions(t, dir))
			got, err := readAll(t, c2.NewReader(obj, ""), obj.Size, 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			settle(c2)
			if !bytes.Equal(got, f.objects[obj.ID]) {
				t.Fatal("bytes differ")
			}
			st := c2.Stats()
			if tc.skew == 0 && (st.DiskHits != 9 || st.DiskCorrupt != 0 || f.numCalls() != 0) {
				t.Fatalf("right sums: %d disk hits, %d corrupt, %d fetches; want 9, 0, 0", st.DiskHits, st.DiskCorrupt, f.numCalls())
			}
			if tc.skew != 0 && (st.DiskHits != 0 || st.DiskCorrupt != 9) {
				t.Fatalf("wrong sums: %d disk hits, %d corrupt; want 0, 9", st.DiskHits, st.DiskCorrupt)
			}
		})
	}
}

func TestUnwritableDiskDirStillServes(t *testing.T) {
	t.Run("dir is a file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "notadir")
		os.WriteFile(path, []byte("x"), 0o600)
		src := newFake()
		obj := src.add("obj", 3*testBS)
		c := newTestCache(t, src, diskOptions(t, path))
		p := make([]byte, obj.Size)
		if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, src.objects["obj"]) {
			t.Fatal("bytes differ")
		}
	})
	t.Run("dir lost while mounted", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "cache")
		src := newFake()
		obj := src.add("obj", 3*testBS)
		c := newTestCache(t, src, diskOptions(t, dir))
		os.RemoveAll(dir)
		os.WriteFile(dir, []byte("x"), 0o600) // MkdirAll of sub-dirs now fails
		p := make([]byte, obj.Size)
		for range 2 {
			if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, src.objects["obj"]) {
				t.Fatal("bytes differ")
			}
			settle(c)
		}
		if s := c.Stats(); s.DiskErrors == 0 || s.DiskBytes != 0 {
			t.Fatalf("DiskErrors=%d DiskBytes=%d", s.DiskErrors, s.DiskBytes)
		}
	})
}

func TestWholeFileSHA512(t *testing.T) {
	for _, size := range []int64{0, 100, 5*testBS + 7} {
		src := newFake()
		obj := src.add("obj", size)
		sum := sha512.Sum512(src.objects["obj"])
		good := hex.EncodeToString(sum[:])

		t.Run("match", func(t *testing.T) {
			c := newTestCache(t, src, testOptions(t))
			r := c.NewReader(obj, strings.ToUpper(good))
			if _, err := readAll(t, r, size, 40_000); err != nil {
				t.Fatal(err)
			}
			if !r.Verified() {
				t.Fatal("not verified")
			}
		})
		t.Run("mismatch drops blocks", func(t *testing.T) {
			dir := t.TempDir()
			opts := testOptions(t)
			opts.DiskDir = dir
			c := newTestCache(t, src, opts)
			bad := strings.Repeat("0", 128)
			r := c.NewReader(obj, bad)
			_, err := readAll(t, r, size, 40_000)
			if !errors.Is(err, ErrChecksumMismatch) {
				t.Fatalf("err=%v, want ErrChecksumMismatch", err)
			}
			if r.Verified() {
				t.Fatal("verified with a wrong sum")
			}
			// The kernel retries a failed range: the retry must fail too, not succeed from a fresh pass.
			if size > 0 {
				if _, err := r.ReadAt(context.Background(), make([]byte, 1), size-1); !errors.Is(err, ErrChecksumMismatch) {
					t.Fatalf("read after a mismatch: err=%v, want ErrChecksumMismatch", err)
				}
			}
			settle(c)
			if s := c.Stats(); s.ChecksumMismatches != 1 || s.DiskBlocks != 0 {
				t.Fatalf("mismatches=%d disk blocks=%d", s.ChecksumMismatches, s.DiskBlocks)
			}
			if size > 0 {
				src.reset()
				p := make([]byte, size)
				if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil {
					t.Fatal(err)
				}
				if n := src.numCalls(); n == 0 {
					t.Fatal("blocks still cached after mismatch")
				}
			}
		})
		t.Run("random reads give no verdict", func(t *testing.T) {
			if size < 2*testBS {
				return
			}
			c := newTestCache(t, src, testOptions(t))
			r := c.NewReader(obj, strings.Repeat("0", 128))
			p := make([]byte, 10)
			for _, off := range []int64{size - 5, 3 * testBS, 10} {
				if _, err := r.ReadAt(context.Background(), p, off); err != nil && !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestDiskFilesPageAligned: cache files are whole pages (written and read with O_DIRECT where the
// filesystem allows it, buffered where it does not, as on tmpfs), blocks of every length come back intact
// after a restart, and a file of the earlier unaligned layout (version 1) is still served.
func TestDiskFilesPageAligned(t *testing.T) {
	dirs := map[string]func(t *testing.T) string{"tempdir": func(t *testing.T) string { return t.TempDir() }}
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dirs["tmpfs"] = func(t *testing.T) string {
			d, err := os.MkdirTemp("/dev/shm", "rescalefs-cache-test-")
			if err != nil {
				t.Skip(err) // not writable here: the tempdir case still runs
			}
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	for name, mk := range dirs {
		t.Run(name, func(t *testing.T) {
			dir := mk(t)
			src := newFake()
			obj := src.add("obj", 2*testBS+diskPage+7) // blocks of testBS, testBS, and a ragged tail
			c1 := newTestCache(t, src, diskOptions(t, dir))
			p := make([]byte, obj.Size)
			if _, err := c1.ReadAt(context.Background(), obj, p, 0); err != nil {
				t.Fatal(err)
			}
			settle(c1)
			c1.Close()
			files := cacheFiles(t, dir)
			if len(files) != 3 {
				t.Fatalf("%d cache files, want 3", len(files))
			}
			for _, f := range files {
				if fi, _ := os.Stat(f); fi.Size()%diskPage != 0 {
					t.Errorf("%s: %d bytes, not whole pages", f, fi.Size())
				}
			}
			src.reset()
			c2 := newTestCache(t, src, diskOptions(t, dir))
			clear(p)
			if _, err := c2.ReadAt(context.Background(), obj, p, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, src.objects["obj"]) || src.numCalls() != 0 {
				t.Fatalf("equal=%v calls=%d", bytes.Equal(p, src.objects["obj"]), src.numCalls())
			}
		})
	}
	t.Run("version 1 file", func(t *testing.T) {
		dir := t.TempDir()
		src := newFake()
		obj := src.add("obj", testBS)
		data := src.objects["obj"]
		hdr := make([]byte, diskHdrLenV1, diskHdrLenV1+3)
		copy(hdr, diskMagic)
		hdr[4] = 1
		binary.LittleEndian.PutUint16(hdr[6:], 3)
		binary.LittleEndian.PutUint64(hdr[8:], uint64(obj.Size))
		binary.LittleEndian.PutUint64(hdr[16:], testBS)
		binary.LittleEndian.PutUint32(hdr[32:], testBS)
		binary.LittleEndian.PutUint64(hdr[36:], xxhash.Sum64(data))
		k := diskKey{objHash("obj"), testBS, 0}
		d := &diskTier{dir: dir}
		os.MkdirAll(filepath.Dir(d.path(k, 0)), 0o700)
		if err := os.WriteFile(d.path(k, 0), append(append(hdr, "obj"...), data...), 0o600); err != nil {
			t.Fatal(err)
		}
		c := newTestCache(t, src, diskOptions(t, dir))
		p := make([]byte, obj.Size)
		if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, data) || src.numCalls() != 0 {
			t.Fatalf("equal=%v calls=%d", bytes.Equal(p, data), src.numCalls())
		}
	})
}

// TestSequentialReadAheadFromDisk: a sequential re-read of blocks held only by the disk tier reads
// them ahead of the reader (they arrive as read-ahead, not as a wait on the disk per block), and
// nothing is fetched.
func TestSequentialReadAheadFromDisk(t *testing.T) {
	dir := t.TempDir()
	src := newFake()
	obj := src.add("obj", 12*testBS)
	c1 := newTestCache(t, src, diskOptions(t, dir))
	p := make([]byte, 1)
	for i := range int64(12) {
		if _, err := c1.ReadAt(context.Background(), obj, p, i*testBS); err != nil {
			t.Fatal(err)
		}
		settle(c1)
	}
	c1.Close()
	src.reset()
	c2 := newTestCache(t, src, diskOptions(t, dir))
	got, err := readAll(t, c2.NewReader(obj, ""), obj.Size, 16<<10)
	if err != nil || !bytes.Equal(got, src.objects["obj"]) {
		t.Fatalf("err=%v equal=%v", err, bytes.Equal(got, src.objects["obj"]))
	}
	settle(c2)
	// Loaded ahead: the reader found the block ready, or joined its load; never read it itself first.
	s := c2.Stats()
	if s.ReadaheadHits+s.WaitHits == 0 || src.numCalls() != 0 || s.DiskHits != 12 {
		t.Fatalf("read-ahead hits %d, wait hits %d, disk hits %d, Source calls %d", s.ReadaheadHits, s.WaitHits, s.DiskHits, src.numCalls())
	}
}

// TestColdReadLeavesEveryBlockOnDisk: a cold sequential read while the disk is busy (every writer slot
// taken) still leaves every block on disk: the disk writes wait for a writer instead of being skipped.
// A re-read from a fresh cache over the same folder then fetches nothing and hashes nothing (the
// object was verified and every block is on disk).
func TestColdReadLeavesEveryBlockOnDisk(t *testing.T) {
	dir := t.TempDir()
	src := newFake()
	const nblocks = 24
	obj := src.add("obj", nblocks*testBS+100)
	sum := sha512.Sum512(src.objects["obj"])
	want := hex.EncodeToString(sum[:])

	c1 := newTestCache(t, src, diskOptions(t, dir))
	for range maxDiskWriters { // the disk is busy with other files' blocks
		c1.disk.writers <- struct{}{}
	}
	r1 := c1.NewReader(obj, want)
	done := make(chan error, 1)
	go func() {
		_, err := readAll(t, r1, obj.Size, 128<<10)
		done <- err
	}()
	eventually(t, "a disk write waiting for a writer", func() bool { return c1.disk.waiting.Load() > 0 })
	for range maxDiskWriters {
		<-c1.disk.writers
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !r1.Verified() {
		t.Fatal("cold read: not verified")
	}
	c1.Close() // waits for the disk writes
	if s := c1.Stats(); s.DiskBlocks != nblocks+1 || s.HashedBytes != obj.Size {
		t.Fatalf("after the cold read: %d of %d blocks on disk, %d of %d bytes hashed", s.DiskBlocks, nblocks+1, s.HashedBytes, obj.Size)
	}

	src.reset()
	c2 := newTestCache(t, src, diskOptions(t, dir))
	r2 := c2.NewReader(obj, want)
	got, err := readAll(t, r2, obj.Size, 128<<10)
	if err != nil || !bytes.Equal(got, src.objects["obj"]) {
		t.Fatalf("re-read: err=%v equal=%v", err, bytes.Equal(got, src.objects["obj"]))
	}
	settle(c2)
	if s := c2.Stats(); src.numCalls() != 0 || s.HashedBytes != 0 || s.DiskHits != nblocks+1 || !r2.Verified() {
		t.Fatalf("re-read: %d Source calls, %d bytes hashed, %d disk hits, verified %v", src.numCalls(), s.HashedBytes, s.DiskHits, r2.Verified())
	}
}
