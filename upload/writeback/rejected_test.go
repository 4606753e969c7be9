package writeback

import (
	"errors"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/upload"
)

// queuedFile is a file written, closed and queued in s, with its engine id.
func queuedFile(t *testing.T, s *Set, name string) (*File, string) {
	t.Helper()
	f, err := s.NewFile(Spec{Name: name, Rel: name, Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("content"), 0); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	s.SettleAll(false)
	mustState(t, f, Queued)
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f, f.id
}

// TestFileRejected: the engine's refusal for good makes a queued file Rejected (failed-permanently),
// which nothing but the user moves: a close or SettleAll does not queue it again; renamed, it is a new
// version (a new upload, the refused one withdrawn). A refusal of a name the file has left since is
// stale and changes nothing; so is one of a version the file has replaced.
func TestFileRejected(t *testing.T) {
	s, eng := newTestSet(t, t.TempDir())
	f, id := queuedFile(t, s, "a.txt")
	rejected := upload.Status{ID: id, Name: "a.txt", State: upload.StateRejected, Error: "400 Bad Request"}
	s.Rejected(rejected)
	mustState(t, f, Rejected)
	if d := f.Describe(); d != "failed permanently: 400 Bad Request"+RejectedHint {
		t.Errorf("describe: %q", d)
	}
	s.Rejected(rejected) // told twice: no change, no refused transition
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	f.Release(true) // a close without a write
	s.SettleAll(false)
	mustState(t, f, Rejected)
	if err := f.Rename("b.txt", "b.txt"); err != nil {
		t.Fatal(err)
	}
	mustState(t, f, Settling)
	s.SettleAll(false)
	mustState(t, f, Queued)
	if st := eng.Snapshot(); len(st) != 1 || st[0].ID == id || st[0].Name != "b.txt" {
		t.Fatalf("after the rename: %+v, want one new upload of b.txt", st)
	}

	// Renamed while the refusal was on its way: the engine sends the new name; the refusal is stale.
	g, gid := queuedFile(t, s, "c.txt")
	if err := g.Rename("d.txt", "d.txt"); err != nil {
		t.Fatal(err)
	}
	s.Rejected(upload.Status{ID: gid, Name: "c.txt", State: upload.StateRejected, Error: "400"})
	mustState(t, g, Queued)
}

// TestFileRejectedResumed: an upload the journal holds as rejected is shown Rejected by the next mount.
func TestFileRejectedResumed(t *testing.T) {
	s, _ := newTestSet(t, t.TempDir())
	_, id := queuedFile(t, s, "a.txt")
	st, ok := s.o.Engine.Status(id)
	if !ok {
		t.Fatal("no status")
	}
	st.State, st.Error = upload.StateRejected, "400 Bad Request"
	f, err := s.NewFile(Spec{Name: "a.txt", Rel: "a.txt", Mode: 0o644, From: Origin{Pending: &st}})
	if err != nil {
		t.Fatal(err)
	}
	mustState(t, f, Rejected)
}

// failingEnqueue is the real engine with Enqueue failing, as a full journal disk makes it fail.
type failingEnqueue struct{ *upload.Engine }

func (failingEnqueue) EnqueueVersion(string, string, int64, string, string) (string, error) {
	return "", errors.New("journal: no space left on device")
}

// TestSettleAllFinalLeavesNoTimer: a file whose Enqueue fails gets a retry timer; at the final
// SettleAll (the mount is gone) no timer may outlive it, firing on closed data every few seconds.
func TestSettleAllFinalLeavesNoTimer(t *testing.T) {
	_, eng := newTestSet(t, t.TempDir())
	s := NewSet(Options{Engine: failingEnqueue{eng}, Settle: time.Hour})
	f, err := s.NewFile(Spec{Name: "a.txt", Rel: "a.txt", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	s.SettleAll(false)
	mustState(t, f, Settling)
	f.mu.RLock()
	armed := f.timer != nil
	f.mu.RUnlock()
	if !armed {
		t.Fatal("no retry timer after a failed Enqueue")
	}
	s.SettleAll(true)
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.timer != nil {
		t.Error("a retry timer outlives the final SettleAll")
	}
}
