package writeback

import (
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/upload"
)

// TestPublishRenamedStaysQueued: the engine's confirmation of a publication under a name the file
// has left (renamed before the confirmation was taken) leaves the file queued, its upload still
// waited for: the engine, told of the rename, publishes it again under the new name. The
// confirmation under the file's own name takes it out of uploads/.
func TestPublishRenamedStaysQueued(t *testing.T) {
	s, _ := newTestSet(t, t.TempDir())
	f, id := queuedFile(t, s, "a.txt")
	if err := f.Rename("b.txt", "b.txt"); err != nil {
		t.Fatal(err)
	}
	if got := s.Done(upload.Status{ID: id, Name: "a.txt", FileID: "F1"}); got != nil {
		t.Fatal("a publication under a name the file left took it out of uploads/")
	}
	mustState(t, f, Queued)
	if !s.Tracks(id) {
		t.Fatal("the upload is no longer waited for")
	}
	if got := s.Done(upload.Status{ID: id, Name: "b.txt", FileID: "F2"}); got != f {
		t.Fatal("the publication under the file's own name did not take it out of uploads/")
	}
	mustState(t, f, Published)
}

func cancelsDone(t *testing.T, eng *upload.Engine) {
	t.Helper()
	select {
	case <-eng.CancelsDone():
	case <-time.After(time.Minute):
		t.Fatal("the cancels never finished")
	}
}

// TestStaleRewriteHandsOver: a queued version superseding a stale file is replaced by a rewrite. The
// stale file goes with the new version (deleted once it is published), not with the withdrawal of the
// old one, which would delete it at once (a removal's rule): until the new version is published, the
// stale file may hold the only copy on the platform.
func TestStaleRewriteHandsOver(t *testing.T) {
	s, eng := newTestSet(t, t.TempDir())
	f, id := queuedFile(t, s, "a.txt")
	if err := eng.Supersede(id, "F1"); err != nil { // a stale publication, as the engine books it
		t.Fatal(err)
	}
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("version 2"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Closed(); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	s.SettleAll(false)
	mustState(t, f, Queued)
	cancelsDone(t, eng)
	if n := eng.Cleanups(); n != 0 {
		t.Errorf("%d clean-ups booked by the rewrite, want none: the stale file waits for the new version", n)
	}
	if n := eng.Pending(); n != 1 {
		t.Errorf("%d pending, want the new version: %+v", n, eng.Snapshot())
	}
	// Removed now: the stale file goes with the new version's withdrawal.
	f.Remove()
	cancelsDone(t, eng)
	if n := eng.Cleanups(); n != 1 {
		t.Errorf("%d clean-ups after the removal, want 1", n)
	}
}
