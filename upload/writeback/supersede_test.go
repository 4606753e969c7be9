package writeback

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/upload"
)

// supersedeRecorder is the real engine (never started), recording the Supersede calls.
type supersedeRecorder struct {
	*upload.Engine
	mu    sync.Mutex // guards calls
	calls map[string][]string
}

func (r *supersedeRecorder) Supersede(id string, fileIDs ...string) error {
	r.mu.Lock()
	r.calls[id] = append(r.calls[id], fileIDs...)
	r.mu.Unlock()
	return r.Engine.Supersede(id, fileIDs...)
}

// TestPublishStaleSuperseded: the engine's confirmation of a publication under a name the file has
// left (renamed while the request was on its way) sends the file again under its name, and that new
// version supersedes the stale publication (deleted by the engine once it is published); a second
// stale one adds to it. The confirmation of the file under its own name asks for nothing more.
func TestPublishStaleSuperseded(t *testing.T) {
	_, eng := newTestSet(t, t.TempDir())
	rec := &supersedeRecorder{Engine: eng, calls: map[string][]string{}}
	s := NewSet(Options{Engine: rec, Settle: time.Hour})
	f, id := queuedFile(t, s, "a.txt")
	stale := func(id, sent, name, fileID string) string {
		t.Helper()
		if err := f.Rename(name, name); err != nil {
			t.Fatal(err)
		}
		if got := s.Done(upload.Status{ID: id, Name: sent, FileID: fileID}); got != nil {
			t.Fatal("a publication under a name the file left took it out of uploads/")
		}
		mustState(t, f, Settling)
		s.SettleAll(false)
		mustState(t, f, Queued)
		f.mu.RLock()
		defer f.mu.RUnlock()
		return f.id
	}
	id2 := stale(id, "a.txt", "b.txt", "F1")
	if got := rec.calls[id2]; !slices.Equal(got, []string{"F1"}) {
		t.Fatalf("upload %s supersedes %q, want F1: %v", id2, got, rec.calls)
	}
	// Renamed again while the new version's request carried b.txt: stale in turn.
	id3 := stale(id2, "b.txt", "c.txt", "F2")
	if got := rec.calls[id3]; !slices.Equal(got, []string{"F2"}) {
		t.Fatalf("upload %s supersedes %q, want F2 (F1 is the engine's to delete with %s): %v", id3, got, id2, rec.calls)
	}
	if got := s.Done(upload.Status{ID: id3, Name: "c.txt", FileID: "F3"}); got != f {
		t.Fatal("the publication under the file's own name did not take it out of uploads/")
	}
	mustState(t, f, Published)
	if len(rec.calls) != 2 {
		t.Errorf("supersede calls %v, want two", rec.calls)
	}
}

// staleFile is a file whose publication under a name it left (renamed while the request was out)
// the engine confirmed: Settling again, the stale file F1 to be superseded by its next version.
func staleFile(t *testing.T, s *Set, eng *upload.Engine) *File {
	t.Helper()
	f, id := queuedFile(t, s, "a.txt")
	if err := f.Rename("b.txt", "b.txt"); err != nil {
		t.Fatal(err)
	}
	if got := s.Done(upload.Status{ID: id, Name: "a.txt", FileID: "F1"}); got != nil {
		t.Fatal("a publication under a name the file left took it out of uploads/")
	}
	mustState(t, f, Settling)
	// Published, in the engine: gone from it (never started here, so withdrawn by hand).
	if err := eng.Cancel(id); err != nil {
		t.Fatal(err)
	}
	return f
}

func cancelsDone(t *testing.T, eng *upload.Engine) {
	t.Helper()
	select {
	case <-eng.CancelsDone():
	case <-time.After(time.Minute):
		t.Fatal("the cancels never finished")
	}
}

// TestStaleRemovedBeforeQueued (case c, in the fs layer's hands): a file with a stale publication
// removed before its next version was queued. Nothing will supersede the stale file any more: it is
// booked with the engine for deletion (a journaled clean-up) rather than forgotten with the file.
func TestStaleRemovedBeforeQueued(t *testing.T) {
	s, eng := newTestSet(t, t.TempDir())
	f := staleFile(t, s, eng)
	f.Remove()
	mustState(t, f, Cancelled)
	cancelsDone(t, eng)
	if n := eng.Cleanups(); n != 1 {
		t.Errorf("%d clean-ups booked after the removal, want 1 (the stale F1)", n)
	}
}

// TestStaleRewriteHandsOver: a queued version superseding a stale file is replaced by a rewrite. The
// stale file goes with the new version (deleted once it is published), not with the withdrawal of the
// old one, which would delete it at once (a removal's rule): until the new version is published, the
// stale file may hold the only copy on the platform.
func TestStaleRewriteHandsOver(t *testing.T) {
	s, eng := newTestSet(t, t.TempDir())
	f := staleFile(t, s, eng)
	s.SettleAll(false)
	mustState(t, f, Queued)
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
