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
