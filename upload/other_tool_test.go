package upload

import (
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// A publishing request whose answer is lost (a crash, an unmount) is looked for in the library by
// the next start. Another tool (the web UI, another client) may have published the same bytes under
// the same name meanwhile: that file is theirs, and rescalefs must never delete it.

// A lost answer is answerHeld's never released (release nil): the file is stored, and the request
// waits until its context ends (the engine's Close, standing for a crash).

// TestLostPublicationOtherToolKept: an upload withdrawn (removed from uploads/) while its publishing
// request is out, whose answer is then lost to a crash; before the next start another tool publishes
// the same bytes under the same name. The next start's look for the lost publication finds both
// files. A direct (multipart) upload's own publication holds the object rescalefs chose (its key is
// random): it is deleted, the other tool's file is not. A small upload's request carries only the
// name and the bytes, so its publication cannot be told from the other tool's: neither is deleted,
// and the log names them. Before, both were deleted: the other tool's file was lost.
func TestLostPublicationOtherToolKept(t *testing.T) {
	for _, c := range []struct {
		name      string
		size      int
		small     int64 // SmallThreshold
		oursGoes  bool
		deletions int64
	}{
		{name: "small", size: 2600, small: 0, oursGoes: false, deletions: 0},
		{name: "multipart", size: testPart + 100, small: -1, oursGoes: true, deletions: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			lost := &answerHeld{Client: p.c} // never released: the answer is lost
			o := p.engineOpts(dir)
			o.Client, o.SmallThreshold = lost, c.small
			h := startEngine(t, o)
			data := randomData(110, c.size)
			id := enqueue(t, h.eng, "shared.txt", data)
			waitFor(t, func() bool { return lost.stored.Load() == 1 })
			if err := h.eng.CancelNoWait(id); err != nil {
				t.Fatal(err)
			}
			h.eng.Close() // the crash: the answer is lost, the withdrawn upload journaled
			ours := lost.fileID.Load().(string)
			theirs := p.uploadStale("shared.txt", data) // another tool, in the same window

			logger, logs := testutil.CaptureLog(t, slog.LevelInfo)
			o = p.engineOpts(dir)
			o.SmallThreshold = c.small
			o.Logger = logger
			h = startEngine(t, o)
			waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
			if p.deleted(theirs.ID) {
				t.Error("the other tool's file was deleted")
			}
			if got := p.deleted(ours); got != c.oursGoes {
				t.Errorf("the lost publication deleted: %v, want %v", got, c.oursGoes)
			}
			if n := p.requests(emulator.EndpointFileDelete); n != c.deletions {
				t.Errorf("%d deletions, want %d", n, c.deletions)
			}
			if !c.oursGoes {
				for _, want := range []string{ours, theirs.ID} {
					if !strings.Contains(logs.String(), want) {
						t.Errorf("the log does not name %s, left in the library:\n%s", want, logs.String())
					}
				}
			}
			// The files left in the library are shown (the status), by name.
			var want []string
			if !c.oursGoes {
				want = []string{ours, theirs.ID}
			}
			checkKept(t, h.eng, "shared.txt", keptRemoved, want)
			journalEmpty(t, dir)
		})
	}
}

// TestLostStaleOtherToolKept: a small upload renamed while its publishing request was out, whose
// answer was then lost to a crash, and another tool's upload of the same bytes under the old name in
// that window. The next start publishes the file under its new name; neither file under the old
// name is deleted (nothing tells ours from theirs), and the log says so. Before, both were booked
// as stale publications of the upload and deleted once it was published.
func TestLostStaleOtherToolKept(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	lost := &answerHeld{Client: p.c} // never released: the answer is lost
	o := p.engineOpts(dir)
	o.Client = lost
	h := startEngine(t, o)
	data := randomData(111, 2700)
	id := enqueue(t, h.eng, "draft.txt", data)
	waitFor(t, func() bool { return lost.stored.Load() == 1 })
	if err := h.eng.Rename(id, "final.txt"); !errors.Is(err, ErrPublishing) {
		t.Fatalf("rename while publishing: %v, want ErrPublishing", err)
	}
	h.eng.Close()
	ours := lost.fileID.Load().(string)
	theirs := p.uploadStale("draft.txt", data)

	logger, logs := testutil.CaptureLog(t, slog.LevelInfo)
	o = p.engineOpts(dir)
	o.Logger = logger
	h = startEngine(t, o)
	p.checkPublished(h.wait(id), "final.txt", data)
	waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
	if p.deleted(theirs.ID) {
		t.Error("the other tool's file was deleted")
	}
	if p.deleted(ours) {
		t.Error("a file that cannot be told from the other tool's was deleted")
	}
	if n := p.requests(emulator.EndpointFileDelete); n != 0 {
		t.Errorf("%d deletions, want 0", n)
	}
	if !strings.Contains(logs.String(), theirs.ID) {
		t.Errorf("the log does not name %s, left in the library:\n%s", theirs.ID, logs.String())
	}
	// Both are shown (the status), by the name they have in the library.
	checkKept(t, h.eng, "draft.txt", keptRenamed, []string{ours, theirs.ID})
	journalEmpty(t, dir)
}

// checkKept: the engine's kept files are exactly the library files want (any order), each under name
// with reason why.
func checkKept(t *testing.T, eng *Engine, name, why string, want []string) {
	t.Helper()
	var kept []string
	for _, k := range eng.Kept() {
		if k.Name != name || k.Why != why {
			t.Errorf("kept: %+v", k)
		}
		kept = append(kept, k.FileID)
	}
	slices.Sort(kept)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(kept, want) {
		t.Errorf("kept %v, want %v", kept, want)
	}
}
