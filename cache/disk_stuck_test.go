package cache

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// TestDiskFailedUnlinkStaysUsed: a cache file whose unlink fails (here EPERM: its directory is
// immutable) is still on disk, so its bytes stay counted used: the tier neither writes past its budget
// on disk nor has Reclaim report room it did not make. Its deletion is retried when room is wanted,
// and once it works the room is freed. A file already gone (not found) is counted free.
func TestDiskFailedUnlinkStaysUsed(t *testing.T) {
	full := diskFileSize(testBS)
	for _, tc := range []struct {
		name string
		// gone removes a's first file by hand instead of making a's files undeletable.
		gone bool
		// free asks the tier for room: a put of another block, or Reclaim; it returns the bytes Reclaim
		// reported freed (-1 for a put).
		free func(d *diskTier, b Object) int64
		// stuck and after are the files of the tier after free with a's files undeletable, and after
		// they are deletable again and free ran once more (a: a's two blocks, b: b's block).
		stuck, after []string
		freed        [2]int64 // what Reclaim reported each time
	}{
		{name: "evicted by a put", free: func(d *diskTier, b Object) int64 { d.put(b, testBS, 0, blockOf(b, 0), nil); return -1 },
			stuck: []string{"a", "a"}, after: []string{"b"}, freed: [2]int64{-1, -1}},
		{name: "reclaimed", free: func(d *diskTier, b Object) int64 { return d.reclaim(full) },
			stuck: []string{"a", "a"}, after: nil, freed: [2]int64{0, 2 * full}},
		{name: "already gone", gone: true, free: func(d *diskTier, b Object) int64 { d.put(b, testBS, 0, blockOf(b, 0), nil); return -1 },
			stuck: []string{"a", "b"}, after: []string{"a", "b"}, freed: [2]int64{-1, -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := openDisk(dir, 2*full, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(d.close)
			d.retryStuckEvery = 0 // a put retries the stuck files every time
			a, b := Object{ID: "a", Size: 2 * testBS}, Object{ID: "b", Size: testBS}
			if objHash(a.ID)[:2] == objHash(b.ID)[:2] {
				t.Fatal("a and b share a folder")
			}
			for idx := range int64(2) {
				d.put(a, testBS, idx, blockOf(a, idx), nil)
			}
			undo := func() {}
			if tc.gone {
				if err := os.Remove(d.path(diskKey{objHash(a.ID), testBS, 0}, 1)); err != nil {
					t.Fatal(err)
				}
			} else {
				undo = testutil.Undeletable(t, filepath.Join(dir, objHash(a.ID)[:2]))
			}
			check := func(when string, want []string, freed, wantFreed int64) {
				t.Helper()
				var got []string
				for _, f := range cacheFiles(t, dir) {
					got = append(got, map[string]string{objHash(a.ID)[:2]: "a", objHash(b.ID)[:2]: "b"}[filepath.Base(filepath.Dir(f))])
				}
				slices.Sort(got)
				used, blocks, _, _ := d.stats()
				onDisk := diskFileBytes(t, dir)
				if !slices.Equal(got, want) || used != onDisk || onDisk > 2*full || freed != wantFreed {
					t.Errorf("%s: files %q (want %q), %d bytes counted used, %d on disk (budget %d), %d blocks indexed; Reclaim said %d freed, want %d",
						when, got, want, used, onDisk, 2*full, blocks, freed, wantFreed)
				}
			}
			check("first", tc.stuck, tc.free(d, b), tc.freed[0])
			undo()
			check("again, a's files deletable", tc.after, tc.free(d, b), tc.freed[1])
		})
	}
}

// TestDiskRestartUndeletableDuplicate: of two files of one block found on start (a crash between a
// rewrite and the old file's deletion), the one the tier fails to delete stays counted used until a
// later deletion of it works.
func TestDiskRestartUndeletableDuplicate(t *testing.T) {
	dir := t.TempDir()
	d1, err := openDisk(dir, 1<<30, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a := Object{ID: "a", Size: testBS}
	d1.put(a, testBS, 0, blockOf(a, 0), nil)
	d1.close()
	k := diskKey{objHash(a.ID), testBS, 0}
	raw, err := os.ReadFile(d1.path(k, 1))
	if err != nil {
		t.Fatal(err)
	}
	old := d1.path(k, 7) // an older copy (older mtime): the one rebuild deletes
	if err := os.WriteFile(old, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	undo := testutil.Undeletable(t, filepath.Dir(old))

	d2, err := openDisk(dir, 1<<30, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.close)
	check := func(when string, files int) {
		t.Helper()
		used, blocks, _, _ := d2.stats()
		if onDisk := diskFileBytes(t, dir); used != onDisk || blocks != 1 || len(cacheFiles(t, dir)) != files {
			t.Errorf("%s: %d bytes counted used, %d on disk in %d files (want %d), %d blocks indexed (want 1)",
				when, used, onDisk, len(cacheFiles(t, dir)), files, blocks)
		}
	}
	check("the old copy undeletable", 2)
	if files, bytes := d2.stuckStats(); files != 1 || bytes != int64(len(raw)) {
		t.Errorf("%d stuck files of %d bytes, want the old copy (1 of %d)", files, bytes, len(raw))
	}
	undo()
	if freed := d2.reclaim(1); freed != int64(len(raw)) {
		t.Errorf("reclaim freed %d bytes, want the old copy's %d", freed, len(raw))
	}
	check("the old copy deleted", 1)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("the old copy: %v", err)
	}
}
