package cache

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// skipWarning is the start of the log line of a put skipped for room held by files the tier cannot delete.
const skipWarning = "disk cache full of files it cannot delete"

// TestDiskSkipForStuckFilesIsDiskError: when the disk tier declines to store blocks because the room is
// held by files it cannot delete (their folder immutable: unlink fails with EPERM), every block so
// served uncached counts as a disk error, and the log says why once per episode (not once per block),
// again only after the stuck files were deleted and a new episode began.
func TestDiskSkipForStuckFilesIsDiskError(t *testing.T) {
	full := diskFileSize(testBS)
	dir := t.TempDir()
	src := newFake()
	a := src.add("a", 2*testBS)
	others := make([]Object, 0, 6)
	for _, id := range []string{"b1", "b2", "b3", "b4", "b5", "b6"} {
		others = append(others, src.add(id, testBS))
	}
	logger, logs := testutil.CaptureLog(t, slog.LevelWarn)
	opts := diskOptions(t, dir)
	opts.DiskBytes = 2 * full // a's two blocks fill the tier
	opts.Readahead = -1
	opts.Logger = logger
	c := newTestCache(t, src, opts)
	read := func(obj Object) {
		t.Helper()
		for off := int64(0); off < obj.Size; off += testBS {
			if _, err := c.ReadAt(context.Background(), obj, make([]byte, 100), off); err != nil {
				t.Fatal(err)
			}
		}
		settle(c)
	}
	folder := func(obj Object) string { return filepath.Join(dir, objHash(obj.ID)[:2]) }
	for i, o := range others {
		if folder(o) == folder(a) || i == 4 && folder(o) == folder(others[3]) {
			t.Fatalf("%s shares a folder with an object whose folder the test makes undeletable", o.ID)
		}
	}
	read(a)
	if !c.disk.has(a, testBS, 0) || !c.disk.has(a, testBS, 1) {
		t.Fatal("a's blocks not on disk")
	}
	undo := testutil.Undeletable(t, folder(a))
	skips := func() int { return strings.Count(logs.String(), skipWarning) }

	// b1 evicts a's blocks, whose files stay; then b1..b3 are skipped (the first retry of the stuck
	// files, by b2's put, fails too).
	for _, o := range others[:3] {
		read(o)
		if c.disk.has(o, testBS, 0) {
			t.Fatalf("%s stored with the room held by undeletable files", o.ID)
		}
	}
	st := c.Stats()
	if st.DiskErrors != 3 || skips() != 1 || st.DiskBytes != 2*full || diskFileBytes(t, dir) != 2*full ||
		st.DiskStuckFiles != 2 || st.DiskStuckBytes != 2*full {
		t.Errorf("3 puts skipped: %d disk errors (want 3), %d log lines about it (want 1), %d bytes counted, %d on disk (want %d), %d stuck files of %d bytes (want 2 of %[5]d)",
			st.DiskErrors, skips(), st.DiskBytes, diskFileBytes(t, dir), 2*full, st.DiskStuckFiles, st.DiskStuckBytes)
	}

	// Deletable again: the next put's retry deletes them and b4 is stored; no error, nothing logged.
	undo()
	c.disk.mu.Lock()
	c.disk.retryStuckAt = time.Time{}
	c.disk.mu.Unlock()
	read(others[3])
	st = c.Stats()
	if !c.disk.has(others[3], testBS, 0) || st.DiskErrors != 3 || skips() != 1 || st.DiskStuckFiles != 0 || st.DiskStuckBytes != 0 {
		t.Errorf("stuck files deletable again: b4 stored %v, %d disk errors (want 3), %d log lines (want 1), %d stuck files of %d bytes (want none)",
			c.disk.has(others[3], testBS, 0), st.DiskErrors, skips(), st.DiskStuckFiles, st.DiskStuckBytes)
	}

	// A new episode is logged again, once: with b4 and b5 stored and their folders undeletable, b6
	// evicts both, whose files stay, and is skipped.
	read(others[4])
	testutil.Undeletable(t, folder(others[3]))
	testutil.Undeletable(t, folder(others[4]))
	read(others[5])
	st = c.Stats()
	if c.disk.has(others[5], testBS, 0) || st.DiskErrors != 4 || skips() != 2 {
		t.Errorf("a second episode: b6 stored %v, %d disk errors (want 4), %d log lines (want 2)",
			c.disk.has(others[5], testBS, 0), st.DiskErrors, skips())
	}
}

// TestDiskStuckFilesInStats: the cache files the disk tier failed to delete (their folder immutable:
// EPERM), however it came to delete them, are counted in Stats with their bytes (which stay in
// DiskBytes), also while their deletion is being retried, and no longer once it worked.
func TestDiskStuckFilesInStats(t *testing.T) {
	full := diskFileSize(testBS)
	for _, tc := range []struct {
		name string
		// corrupt damages a's first file before the folder is made undeletable.
		corrupt bool
		// drop makes the tier delete a's files.
		drop        func(c *Cache, a, b Object)
		files       int64
		bytes       int64
		wantCorrupt int64
		// retried is how many of a's files are stuck after a failed Reclaim: it also takes (and fails
		// to delete) the blocks still indexed, since the stuck files freed nothing.
		retried int64
	}{
		{name: "evicted by a put", drop: func(c *Cache, a, b Object) { c.disk.put(b, testBS, 0, blockOf(b, 0), nil) },
			files: 2, bytes: 2 * full, retried: 2},
		{name: "reclaimed", drop: func(c *Cache, a, b Object) { c.Reclaim(1) }, files: 2, bytes: 2 * full, retried: 2},
		{name: "dropped with its object", drop: func(c *Cache, a, b Object) { c.Drop(a.ID) }, files: 2, bytes: 2 * full, retried: 2},
		{name: "found corrupt", corrupt: true, drop: func(c *Cache, a, b Object) { c.disk.get(a, testBS, 0, testBS) },
			files: 1, bytes: full, wantCorrupt: 1, retried: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := diskOptions(t, dir)
			opts.DiskBytes = 2 * full
			c := newTestCache(t, newFake(), opts)
			a, b := Object{ID: "a", Size: 2 * testBS}, Object{ID: "b", Size: testBS}
			for idx := range int64(2) {
				c.disk.put(a, testBS, idx, blockOf(a, idx), nil)
			}
			if tc.corrupt {
				p := c.disk.path(diskKey{objHash(a.ID), testBS, 0}, 1)
				f, err := os.OpenFile(p, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				_, err = f.WriteAt([]byte("damaged"), diskPage+10)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			undo := testutil.Undeletable(t, filepath.Join(dir, objHash(a.ID)[:2]))
			tc.drop(c, a, b)
			check := func(when string, files, bytes int64) {
				t.Helper()
				st := c.Stats()
				if st.DiskStuckFiles != files || st.DiskStuckBytes != bytes || st.DiskBytes != diskFileBytes(t, dir) || st.DiskCorrupt != tc.wantCorrupt {
					t.Errorf("%s: %d stuck files of %d bytes (want %d of %d); %d bytes counted, %d on disk; %d corrupt (want %d)",
						when, st.DiskStuckFiles, st.DiskStuckBytes, files, bytes, st.DiskBytes, diskFileBytes(t, dir), st.DiskCorrupt, tc.wantCorrupt)
				}
			}
			check("a's files undeletable", tc.files, tc.bytes)

			// A retry in flight (held; it fails again) still counts them.
			entered, release := holdUnlinks(t, c.disk)
			retried := goDone(func() { c.Reclaim(1) })
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("Reclaim did not retry the stuck files")
			}
			check("during a retry", tc.files, tc.bytes)
			release()
			within(t, "the retry", retried)
			check("after a failed retry", tc.retried, tc.retried*full)

			undo()
			c.Reclaim(1)
			check("deleted at last", 0, 0)
		})
	}
}

// TestDiskRestartStuckCountedOnce: files a mount failed to delete are found by the next start like any
// cache file, indexed and counted used once (not also as stuck); when that tier fails to delete them
// in turn they are stuck once, and a start whose budget is smaller than what it finds counts the files
// its eviction cannot delete as stuck, their bytes used once.
func TestDiskRestartStuckCountedOnce(t *testing.T) {
	full := diskFileSize(testBS)
	dir := t.TempDir()
	a, b := Object{ID: "a", Size: 2 * testBS}, Object{ID: "b", Size: testBS}
	openTier := func(budget int64) *diskTier {
		t.Helper()
		d, err := openDisk(dir, budget, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.close)
		return d
	}
	check := func(d *diskTier, when string, blocks, stuck, errs int64) {
		t.Helper()
		used, n, _, e := d.stats()
		files, bytes := d.stuckStats()
		onDisk := diskFileBytes(t, dir)
		if used != onDisk || n != blocks || files != stuck || bytes != stuck*full || e != errs {
			t.Errorf("%s: %d bytes counted used, %d on disk; %d blocks indexed (want %d); %d stuck files of %d bytes (want %d of %d); %d disk errors (want %d)",
				when, used, onDisk, n, blocks, files, bytes, stuck, stuck*full, e, errs)
		}
	}
	d1 := openTier(2 * full)
	for idx := range int64(2) {
		d1.put(a, testBS, idx, blockOf(a, idx), nil)
	}
	testutil.Undeletable(t, filepath.Join(dir, objHash(a.ID)[:2]))
	d1.put(b, testBS, 0, blockOf(b, 0), nil)
	check(d1, "first mount", 0, 2, 1)
	d1.close()

	d2 := openTier(2 * full)
	check(d2, "restarted", 2, 0, 0)
	d2.put(b, testBS, 0, blockOf(b, 0), nil)
	check(d2, "restarted, then b put", 0, 2, 1)
	d2.close()

	d3 := openTier(full)
	check(d3, "restarted with room for one block", 1, 1, 0)
}
