package cache

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// holdUnlinks makes every file deletion of d wait until release is called; each reports its path on
// entered as it starts (never blocking). release is safe to call twice and also runs in cleanup, before
// the tier's Close, so a failing test leaves no deletion held.
func holdUnlinks(t *testing.T, d *diskTier) (entered <-chan string, release func()) {
	t.Helper()
	ch := make(chan string, 64)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	d.unlink = func(p string) error {
		select {
		case ch <- p:
		default:
		}
		<-gate
		return os.Remove(p)
	}
	t.Cleanup(release)
	return ch, release
}

// within waits for done; the deadline only stops a test that would hang (nothing is timed): what is
// blocked on a held deletion never finishes before release.
func within(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still blocked behind a held deletion", what)
	}
}

// goDone runs f in a goroutine and returns a channel closed when it returns.
func goDone(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	return done
}

// diskFileBytes is the sum of the sizes of the cache files in dir.
func diskFileBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	for _, f := range cacheFiles(t, dir) {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// TestDiskReadNotBlockedByEvictionUnlinks: while an eviction's file deletion is held (a slow disk), a
// read of another block is served from the disk tier; the block being deleted is not served; its bytes
// still count as used until its file is gone, so the budget holds on disk too.
func TestDiskReadNotBlockedByEvictionUnlinks(t *testing.T) {
	dir := t.TempDir()
	src := newFake()
	obj := src.add("obj", 4*testBS)
	opts := diskOptions(t, dir)
	opts.DiskBytes = 3 * diskFileSize(testBS) // room for blocks 0, 1 and 2
	c := newTestCache(t, src, opts)
	p := make([]byte, 100)
	for i := range int64(3) {
		if _, err := c.ReadAt(context.Background(), obj, p, i*testBS); err != nil {
			t.Fatal(err)
		}
		settle(c)
	}
	entered, release := holdUnlinks(t, c.disk)
	src.reset()
	hits := c.Stats().DiskHits

	// Block 3 is fetched and put on disk, which evicts block 0: its deletion is held.
	var err3 error
	read3 := goDone(func() { _, err3 = c.ReadAt(context.Background(), obj, make([]byte, 100), 3*testBS) })
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("block 3's put never deleted an evicted file")
	}

	var err2 error
	got := make([]byte, testBS)
	read2 := goDone(func() { _, err2 = c.ReadAt(context.Background(), obj, got, 2*testBS) })
	within(t, "a disk-tier read of block 2 during an eviction", read2)
	if err2 != nil || !bytes.Equal(got, src.objects["obj"][2*testBS:3*testBS]) {
		t.Fatalf("block 2: err=%v, bytes equal %v", err2, bytes.Equal(got, src.objects["obj"][2*testBS:3*testBS]))
	}
	s := c.Stats()
	if s.DiskHits != hits+1 || src.numCalls() != 1 {
		t.Fatalf("block 2: %d disk hits, %d Source calls; want 1 and 1 (block 3's)", s.DiskHits-hits, src.numCalls())
	}
	if c.disk.has(obj, testBS, 0) {
		t.Fatal("block 0 still indexed while its file is being deleted")
	}
	if s.DiskBytes > opts.DiskBytes || s.DiskBytes != diskFileBytes(t, dir) {
		t.Fatalf("during the deletion: %d bytes counted, %d on disk, budget %d", s.DiskBytes, diskFileBytes(t, dir), opts.DiskBytes)
	}

	release()
	within(t, "block 3's read", read3)
	if err3 != nil {
		t.Fatal(err3)
	}
	settle(c)
	for idx, want := range []bool{false, true, true, true} {
		if c.disk.has(obj, testBS, int64(idx)) != want {
			t.Errorf("block %d on disk: %v, want %v", idx, !want, want)
		}
	}
	if s := c.Stats(); s.DiskBytes != opts.DiskBytes || diskFileBytes(t, dir) != opts.DiskBytes || s.DiskBlocks != 3 {
		t.Fatalf("after: %d bytes counted, %d on disk, %d blocks; want %d, %d, 3", s.DiskBytes, diskFileBytes(t, dir), s.DiskBlocks, opts.DiskBytes, opts.DiskBytes)
	}
}

// TestDiskRewriteWhileOldFileDeleted: a block dropped from the disk tier (evicted, reclaimed for a
// staging file, or dropped with its object) and written again while its old file's deletion is still
// pending keeps its new file: the delayed deletion removes only the old one.
func TestDiskRewriteWhileOldFileDeleted(t *testing.T) {
	full := diskFileSize(testBS)
	for _, tc := range []struct {
		name string
		// drop makes the tier delete block a's file (the deletion is held); it runs in a goroutine.
		drop func(d *diskTier, a, b Object)
	}{
		// b's second block does not fit: a, least recently used, is evicted.
		{"evicted", func(d *diskTier, a, b Object) { d.put(b, testBS, 1, blockOf(b, 1), nil) }},
		{"reclaimed", func(d *diskTier, a, b Object) { d.reclaim(1) }},
		{"dropped", func(d *diskTier, a, b Object) { d.dropObject(a.ID) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := openDisk(dir, 2*full, testLogger(t)) // a's small file, then room for two blocks of b
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(d.close)
			// a compresses to one small file, so its rewrite fits beside b's two blocks.
			a := Object{ID: "a", Size: testBS}
			aData := bytes.Repeat([]byte("rescale!"), testBS/8)
			b := Object{ID: "b", Size: 2 * testBS}
			d.put(a, testBS, 0, aData, nil)
			d.put(b, testBS, 0, blockOf(b, 0), nil)

			entered, release := holdUnlinks(t, d)
			dropped := goDone(func() { tc.drop(d, a, b) })
			select {
			case <-entered:
			case <-time.After(10 * time.Second):
				t.Fatal("a's file was never deleted")
			}
			var served []byte
			within(t, "a disk-tier read of a", goDone(func() { served = d.get(a, testBS, 0, testBS) }))
			if served != nil {
				t.Fatal("a served while its file is being deleted")
			}
			within(t, "the rewrite of a", goDone(func() { d.put(a, testBS, 0, aData, nil) }))
			release()
			within(t, "the drop", dropped)

			if got := d.get(a, testBS, 0, testBS); !bytes.Equal(got, aData) {
				t.Fatalf("a after its old file's delayed deletion: %d bytes, want its new data", len(got))
			}
			used, blocks, _, _ := d.stats()
			if onDisk := diskFileBytes(t, dir); used != onDisk || used > 2*full || int64(len(cacheFiles(t, dir))) != blocks {
				t.Fatalf("%d bytes counted, %d on disk (budget %d); %d blocks indexed, %d files", used, onDisk, 2*full, blocks, len(cacheFiles(t, dir)))
			}
		})
	}
}

// blockOf returns block idx of test object obj: incompressible bytes, a pure function of its id and index.
func blockOf(obj Object, idx int64) []byte {
	r := rand.New(rand.NewPCG(uint64(idx), uint64(len(obj.ID))))
	p := make([]byte, min(testBS, obj.Size-idx*testBS))
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// TestDiskCloseWaitsForDeletions: close returns only once the deletions in flight are done (a new tier
// on the same folder must not index a file an old one is deleting).
func TestDiskCloseWaitsForDeletions(t *testing.T) {
	dir := t.TempDir()
	d, err := openDisk(dir, 1<<30, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	a := Object{ID: "a", Size: testBS}
	d.put(a, testBS, 0, blockOf(a, 0), nil)
	entered, release := holdUnlinks(t, d)
	reclaimed := goDone(func() { d.reclaim(1) })
	<-entered
	closed := goDone(d.close)
	// Wait until close waits for the tier (life is pending for writing); it must not have returned.
	eventually(t, "close waiting for the deletion", func() bool {
		select {
		case <-closed:
			t.Fatal("close returned while a deletion was in flight")
		default:
		}
		if d.life.TryRLock() {
			d.life.RUnlock()
			return false
		}
		return true
	})
	release()
	within(t, "close", closed)
	if files := cacheFiles(t, dir); len(files) != 0 {
		t.Fatalf("after close: %d cache files, want the deleted one gone", len(files))
	}
	within(t, "reclaim", reclaimed)
}

// TestDiskRestartGenerations: files named without a generation (earlier mounts) and with one are
// indexed on start; of two files of one block (a rewrite whose old file's deletion a crash cut short)
// the most recently used is kept and the other deleted; the next write goes on from the highest
// generation found, never reusing a name.
func TestDiskRestartGenerations(t *testing.T) {
	dir := t.TempDir()
	d1, err := openDisk(dir, 1<<30, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a := Object{ID: "a", Size: 3 * testBS}
	for idx := range int64(3) {
		d1.put(a, testBS, idx, blockOf(a, idx), nil)
	}
	d1.close()
	k := func(idx int64) diskKey { return diskKey{objHash(a.ID), testBS, idx} }
	// Block 0 as an earlier mount named it; block 1 twice: an old copy (generation 1, made older)
	// beside the current file (generation 2).
	if err := os.Rename(d1.path(k(0), 1), d1.path(k(0), 0)); err != nil {
		t.Fatal(err)
	}
	old := d1.path(k(1), 7)
	if err := os.Rename(d1.path(k(1), 2), old); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d1.path(k(1), 2), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	os.Chtimes(old, past, past)

	d2, err := openDisk(dir, 1<<30, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.close)
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("the older file of block 1 was kept: %v", err)
	}
	for idx := range int64(3) {
		if got := d2.get(a, testBS, idx, testBS); !bytes.Equal(got, blockOf(a, idx)) {
			t.Fatalf("block %d after restart: %d bytes, want its data", idx, len(got))
		}
	}
	used, blocks, _, _ := d2.stats()
	if blocks != 3 || used != diskFileBytes(t, dir) || len(cacheFiles(t, dir)) != 3 {
		t.Fatalf("%d blocks, %d bytes counted, %d on disk in %d files", blocks, used, diskFileBytes(t, dir), len(cacheFiles(t, dir)))
	}
	// A rewrite of block 1 takes generation 8, past the 7 found.
	d2.remove(a, testBS, 1)
	d2.put(a, testBS, 1, blockOf(a, 1), nil)
	if _, err := os.Stat(d2.path(k(1), 8)); err != nil {
		t.Fatalf("rewrite of block 1: %v", err)
	}
}

// TestDiskPutWaitsForRoomBeingFreed: a put whose room is being freed by another put's deletion waits
// for that deletion instead of writing past the budget, so the tier's files stay within it on disk.
func TestDiskPutWaitsForRoomBeingFreed(t *testing.T) {
	full := diskFileSize(testBS)
	dir := t.TempDir()
	d, err := openDisk(dir, 2*full, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	obj := Object{ID: "obj", Size: 4 * testBS}
	for idx := range int64(2) {
		d.put(obj, testBS, idx, blockOf(obj, idx), nil)
	}
	entered, release := holdUnlinks(t, d)
	put2 := goDone(func() { d.put(obj, testBS, 2, blockOf(obj, 2), nil) }) // evicts block 0: held
	<-entered
	// Block 1 and the room of block 0, being freed, fill the budget: block 3 waits for the deletion.
	put3 := goDone(func() { d.put(obj, testBS, 3, blockOf(obj, 3), nil) })
	eventually(t, "block 3's put waiting for room", func() bool { return d.waitingRoom.Load() > 0 })
	if n := diskFileBytes(t, dir); n > 2*full {
		t.Fatalf("%d bytes on disk during the deletion, budget %d", n, 2*full)
	}
	release()
	within(t, "block 2's put", put2)
	within(t, "block 3's put", put3)
	used, blocks, _, _ := d.stats()
	if n := diskFileBytes(t, dir); used != n || n > 2*full || blocks != 2 {
		t.Fatalf("after: %d bytes counted, %d on disk (budget %d), %d blocks", used, n, 2*full, blocks)
	}
	for idx := range int64(2) {
		if d.has(obj, testBS, idx) {
			t.Errorf("block %d kept, want the two newest", idx)
		}
	}
}

// TestDiskBlockDroppedWhileReadNotServed: a get that looked a block up just before the block was
// dropped (here with its object, as after a whole-file checksum mismatch) and reads its file while the
// deletion is pending does not serve it, although the file is still whole: a miss.
func TestDiskBlockDroppedWhileReadNotServed(t *testing.T) {
	d, err := openDisk(t.TempDir(), 1<<30, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	a := Object{ID: "a", Size: testBS}
	d.put(a, testBS, 0, blockOf(a, 0), nil)
	reading := make(chan struct{})
	readGate := make(chan struct{})
	var gateOnce sync.Once
	openGate := func() { gateOnce.Do(func() { close(readGate) }) }
	t.Cleanup(openGate)
	d.beforeRead = func(string) {
		close(reading)
		<-readGate
	}
	var got []byte
	read := goDone(func() { got = d.get(a, testBS, 0, testBS) })
	<-reading
	entered, release := holdUnlinks(t, d)
	dropped := goDone(func() { d.dropObject(a.ID) })
	<-entered // a is out of the index; its file is still there
	openGate()
	within(t, "the get", read)
	release()
	within(t, "the drop", dropped)
	if got != nil {
		t.Fatal("a block dropped while it was read was served")
	}
}
