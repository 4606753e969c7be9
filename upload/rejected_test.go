package upload

import (
	"context"
	"errors"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestRejectedNotRetried (issue 8, defect 2): a file the platform refuses with a 400 (a name with a
// control character) is rejected after one attempt, shown as such, never retried; renamed, it is
// tried again and published.
func TestRejectedNotRetried(t *testing.T) {
	p := newPlatform(t, false)
	h := startEngine(t, p.engineOpts(t.TempDir()))
	data := randomData(80, 1000)
	id := enqueue(t, h.eng, "bad\x01name.txt", data)
	waitFor(t, func() bool { st, ok := h.eng.Status(id); return ok && st.State == StateRejected })
	if st, _ := h.eng.Status(id); st.Attempts != 1 || !st.NextTry.IsZero() || st.Error == "" {
		t.Errorf("rejected upload: %+v", st)
	}
	if n := p.requests(emulator.EndpointUpload); n != 1 {
		t.Errorf("%d upload requests, want 1 (a rejection is not retried)", n)
	}
	if h.eng.Pending() != 1 {
		t.Errorf("pending %d, want the rejected upload kept", h.eng.Pending())
	}
	if err := h.eng.Rename(id, "good name.txt"); err != nil {
		t.Fatal(err)
	}
	if f := h.wait(id); f.Name != "good name.txt" {
		t.Errorf("published as %q", f.Name)
	}
	if n := p.requests(emulator.EndpointUpload); n != 2 {
		t.Errorf("%d upload requests, want 2", n)
	}
}

// TestRejectedRenamedInFlight: a refusal is for good only for the name it refused. A file renamed
// while its publishing request (under the old, refused name) is on its way is tried again under the
// new name and published; without that it stayed rejected under a name never sent.
func TestRejectedRenamedInFlight(t *testing.T) {
	p := newPlatform(t, false)
	p.e.RejectUploadName("old.txt")
	p.e.SetFrozen(true) // the publishing request is held until the rename is recorded
	h := startEngine(t, p.engineOpts(t.TempDir()))
	id := enqueue(t, h.eng, "old.txt", randomData(81, 1000))
	waitFor(t, func() bool { return p.e.Holding() >= 1 })
	if err := h.eng.Rename(id, "new.txt"); !errors.Is(err, ErrPublishing) {
		t.Fatalf("rename during the request: %v, want ErrPublishing", err)
	}
	p.e.SetFrozen(false)
	if f := h.wait(id); f.Name != "new.txt" {
		t.Errorf("published as %q", f.Name)
	}
	if n := p.requests(emulator.EndpointUpload); n != 2 {
		t.Errorf("%d upload requests, want 2 (old.txt refused, new.txt published)", n)
	}
}

// TestLostAnswerStoredNameOnce: the platform stores a name differently and the answer to the
// publishing request is lost (the connection cut mid-body, the file stored): the retry finds the
// file under the name it was stored as, and the library holds it once, not twice.
func TestLostAnswerStoredNameOnce(t *testing.T) {
	p := newPlatform(t, false)
	p.e.StoreUploadNameAs("norm name.txt", "norm_name.txt")
	p.e.FailNext(emulator.EndpointUpload, 1, emulator.FaultCut)
	h := startEngine(t, p.engineOpts(t.TempDir()))
	data := randomData(82, 5000)
	id := enqueue(t, h.eng, "norm name.txt", data)
	f := h.wait(id)
	p.checkPublished(f, "norm_name.txt", data)
	files, err := p.c.LibraryFiles(context.Background(), "norm")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 {
		t.Errorf("%d library files, want 1: %+v", len(files), files)
	}
	if n := p.requests(emulator.EndpointUpload); n != 1 {
		t.Errorf("%d upload requests, want 1 (the retry finds the stored file)", n)
	}
}

// TestStoredAs: the names the platform may store a name as, and names it may not.
func TestStoredAs(t *testing.T) {
	for _, c := range []struct {
		sent, stored string
		want         bool
	}{
		{"norm name.txt", "norm_name.txt", true},
		{"two\nlines.txt", "two%0Alines.txt", true},
		{"a.txt", "a.txt", true},
		{"a.txt", "a-copy.txt", false},
		{"a1.txt", "a2.txt", false},
	} {
		if got := storedAs(c.sent, c.stored); got != c.want {
			t.Errorf("storedAs(%q, %q) = %v", c.sent, c.stored, got)
		}
	}
}
