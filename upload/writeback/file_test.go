package writeback

import (
	"errors"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// newTestSet is a Set over a real engine that is never started (nothing is sent), with its folder in
// dir, and a settle time long enough that only SettleAll queues.
func newTestSet(t *testing.T, dir string) (*Set, *upload.Engine) {
	t.Helper()
	c, err := remote.New(remote.Options{BaseURL: "http://127.0.0.1:1", APIKey: "unused-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := upload.New(upload.Options{Client: c, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return NewSet(Options{Engine: eng, Settle: time.Hour}), eng
}

func mustState(t *testing.T, f *File, want State) {
	t.Helper()
	if got := f.State(); got != want {
		t.Fatalf("state %s, want %s", got, want)
	}
}

// TestFileLife drives files through the table with real staging files and a real journal, no mount:
// a closed file is queued, a rewrite of a queued one is a new version replacing it, a removal
// withdraws it at once, a temporary name holds it, a close under a temporary name does not queue.
func TestFileLife(t *testing.T) {
	s, eng := newTestSet(t, t.TempDir())
	f, err := s.NewFile(Spec{Name: "a.txt", Rel: "d/a.txt", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	mustState(t, f, Writing)
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	s.SettleAll(false) // open for writing: not queued
	mustState(t, f, Writing)
	if err := f.Closed(); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	mustState(t, f, Settling)
	s.SettleAll(false)
	mustState(t, f, Queued)
	if eng.Pending() != 1 {
		t.Fatalf("pending %d", eng.Pending())
	}
	// A new version: a staging copy, queued in turn, the first withdrawn.
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("J"), 0); err != nil {
		t.Fatal(err)
	}
	mustState(t, f, Writing)
	if err := f.Closed(); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	s.SettleAll(false)
	mustState(t, f, Queued)
	if st := eng.Snapshot(); len(st) != 1 || st[0].Size != 5 {
		t.Fatalf("after the new version: %+v", st)
	}
	buf := make([]byte, 5)
	if k, err := f.ReadAt(buf, 0); err != nil || string(buf[:k]) != "Jello" {
		t.Fatalf("read back %q %v", buf[:k], err)
	}
	// Renamed to a temporary name: taken back from the engine, held.
	if err := f.Rename(".a.txt.swp", "d/.a.txt.swp"); err != nil {
		t.Fatal(err)
	}
	mustState(t, f, Held)
	if eng.Pending() != 0 {
		t.Fatalf("pending %d after the rename to a temporary name", eng.Pending())
	}
	s.SettleAll(false)
	mustState(t, f, Held)
	// Renamed back: settles and is queued.
	if err := f.Rename("b.txt", "d/b.txt"); err != nil {
		t.Fatal(err)
	}
	mustState(t, f, Settling)
	s.SettleAll(false)
	mustState(t, f, Queued)
	if st := eng.Snapshot(); len(st) != 1 || st[0].Name != "b.txt" {
		t.Fatalf("queued: %+v", st)
	}
	// Removed: cancelled at once, withdrawn from the engine before Remove returns.
	f.Remove()
	mustState(t, f, Cancelled)
	if eng.Pending() != 0 {
		t.Fatalf("pending %d after the removal", eng.Pending())
	}
	if err := f.Rename("c.txt", "c.txt"); err != nil { // a refused transition keeps the state
		t.Fatal(err)
	}
	mustState(t, f, Cancelled)
}

// TestFileWriteFailed: a write refused by a full disk makes the file write-failed; closing it, writing
// more or queueing everything does not publish it; truncating it to where the failure began does.
func TestFileWriteFailed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Fatalf("tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	s, eng := newTestSet(t, dir)
	f, err := s.NewFile(Spec{Name: "big.bin", Rel: "big.bin", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	var werr error
	var off int64
	for i := 0; i < 8 && werr == nil; i++ {
		var k int
		k, werr = f.WriteAt(chunk, off)
		off += int64(k)
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 2 MiB on a 1 MiB disk: %v", werr)
	}
	mustState(t, f, WriteFailed)
	if err := f.Closed(); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	mustState(t, f, WriteFailed)
	s.SettleAll(false)
	if eng.Pending() != 0 {
		t.Fatal("a file whose write failed was queued")
	}
	// A truncate that keeps what was written is not a rewrite: the writer never finished the file.
	size := f.Attr().Size - 1
	if err := f.SetAttr(&size, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	mustState(t, f, WriteFailed)
	zero := int64(0)
	if err := f.SetAttr(&zero, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	mustState(t, f, Settling) // truncate(2) with no writer: complete at once
	s.SettleAll(false)
	mustState(t, f, Queued)
}

// TestPendingUntilDone: what `status --watch` waits on. A written file is settling, a queued one counts
// until Done (which the mount calls after the engine has finished and the library was told), and then
// nothing is pending: a watcher that stops when Pending is empty finds the file published.
func TestPendingUntilDone(t *testing.T) {
	s, eng := newTestSet(t, t.TempDir())
	pending := func(wantSettling []string, wantQueued int) {
		t.Helper()
		settling, queued := s.Pending()
		if !slices.Equal(settling, wantSettling) || queued != wantQueued {
			t.Fatalf("pending %q and %d queued, want %q and %d", settling, queued, wantSettling, wantQueued)
		}
	}
	pending([]string{}, 0)
	f, err := s.NewFile(Spec{Name: "a.txt", Rel: "a.txt", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello"), 0); err != nil {
		t.Fatal(err)
	}
	pending([]string{"a.txt"}, 0)
	if err := f.Closed(); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	pending([]string{"a.txt"}, 0)
	s.SettleAll(false)
	pending([]string{}, 1)
	st := eng.Snapshot()
	if len(st) != 1 {
		t.Fatalf("engine: %+v", st)
	}
	st[0].State = upload.StateDone // as the engine reports it before the mount's Done runs
	pending([]string{}, 1)
	if s.Done(st[0]) != f {
		t.Fatal("Done did not publish the file")
	}
	mustState(t, f, Published)
	pending([]string{}, 0)
}
