package cache

import (
	"context"
	"log/slog"
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
	undo := undeletable(t, folder(a))
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
	if st.DiskErrors != 3 || skips() != 1 || st.DiskBytes != 2*full || diskFileBytes(t, dir) != 2*full {
		t.Errorf("3 puts skipped: %d disk errors (want 3), %d log lines about it (want 1), %d bytes counted, %d on disk (want %d)",
			st.DiskErrors, skips(), st.DiskBytes, diskFileBytes(t, dir), 2*full)
	}

	// Deletable again: the next put's retry deletes them and b4 is stored; no error, nothing logged.
	undo()
	c.disk.mu.Lock()
	c.disk.retryStuckAt = time.Time{}
	c.disk.mu.Unlock()
	read(others[3])
	st = c.Stats()
	if !c.disk.has(others[3], testBS, 0) || st.DiskErrors != 3 || skips() != 1 {
		t.Errorf("stuck files deletable again: b4 stored %v, %d disk errors (want 3), %d log lines (want 1)",
			c.disk.has(others[3], testBS, 0), st.DiskErrors, skips())
	}

	// A new episode is logged again, once: with b4 and b5 stored and their folders undeletable, b6
	// evicts both, whose files stay, and is skipped.
	read(others[4])
	undeletable(t, folder(others[3]))
	undeletable(t, folder(others[4]))
	read(others[5])
	st = c.Stats()
	if c.disk.has(others[5], testBS, 0) || st.DiskErrors != 4 || skips() != 2 {
		t.Errorf("a second episode: b6 stored %v, %d disk errors (want 4), %d log lines (want 2)",
			c.disk.has(others[5], testBS, 0), st.DiskErrors, skips())
	}
}
