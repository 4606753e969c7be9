package upload

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestCancelVersionSurvivesCrash: the removal of a file of uploads/ being rewritten (CancelVersion:
// its old version queued, its new one a closed staging file recorded as replacing it) is cut by a
// crash between its two steps, the withdrawal journaled and the staging file not discarded yet (an
// image of the engine folder taken there). The next start finishes the removal: it publishes
// neither version, and hands no staging file to the fs layer (which would show it in uploads/ again
// and queue it), then leaves nothing behind.
func TestCancelVersionSurvivesCrash(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	img := dir + ".crash"
	o := p.engineOpts(dir)
	o.beforeDiscard = func(string) { // the crash: what the folder holds between the two steps
		if err := testutil.CopyTree(dir, img); err != nil {
			t.Error(err)
		}
	}
	eng, err := New(o) // not started: the old version stays queued
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	id := enqueue(t, eng, "a.txt", []byte("version 1"))
	f, err := eng.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	v2 := []byte("version 2, longer")
	if _, err := f.Write(v2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := eng.RecordStaging(f.Name(), StagingRecord{Path: "a.txt", Closed: true, Size: int64(len(v2)), Replaces: id}); err != nil {
		t.Fatal(err)
	}

	if err := eng.CancelVersion(id, f.Name()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(img); err != nil {
		t.Fatal("no image taken between the two steps:", err)
	}
	if _, err := os.Stat(f.Name()); err == nil {
		t.Error("the new version's staging file is still there after CancelVersion")
	}
	eng.Close()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(img, dir); err != nil {
		t.Fatal(err)
	}

	h := startEngine(t, p.engineOpts(dir))
	if staged := h.eng.TakeStaged(); len(staged) != 0 {
		t.Errorf("the next start hands the removed file's new version to the fs layer: %+v", staged)
	}
	waitFor(t, func() bool { return h.eng.Pending() == 0 && h.eng.Cleanups() == 0 && !h.eng.holds(id) })
	h.mu.Lock()
	if len(h.done) != 0 {
		t.Errorf("the removed file was published after the crash: %v", h.done)
	}
	h.mu.Unlock()
	if n := p.requests(emulator.EndpointUpload); n != 0 {
		t.Errorf("%d small uploads, want none", n)
	}
	journalEmpty(t, dir)
	if ents, _ := os.ReadDir(filepath.Join(dir, "staging")); len(ents) != 0 {
		t.Errorf("staging not empty: %v", ents)
	}
}

// TestNewVersionQueuedThenCrash: a new version of a pending file is queued (EnqueueVersion) and the
// crash comes before the old version is cancelled. The next start withdraws the old version (it is
// not published) after handing its stale publications to the new one, which deletes them once it is
// published, not before (until then they may hold the only copy on the platform).
func TestNewVersionQueuedThenCrash(t *testing.T) {
	p := newPlatform(t, false)
	stale, err := p.e.AddLibraryFile("a.txt", strings.NewReader("a stale publication"), 19)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	eng, err := New(p.engineOpts(dir)) // not started
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	old := enqueue(t, eng, "a.txt", []byte("version 1"))
	if err := eng.Supersede(old, stale.ID); err != nil {
		t.Fatal(err)
	}
	f, err := eng.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	v2 := []byte("version 2")
	if _, err := f.Write(v2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	nu, err := eng.EnqueueVersion(f.Name(), "a.txt", 0, "", old)
	if err != nil {
		t.Fatal(err)
	}
	crashAt(t, dir) // before Handover and the old version's cancel

	o := p.engineOpts(dir)
	eng2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	r, err := readRecord(filepath.Join(dir, "journal", nu+".json"), filepath.Join(dir, "pending"))
	if err != nil || !slices.Contains(r.Supersedes, stale.ID) {
		t.Fatalf("the new version's record %+v (%v) does not hold the stale publication", r, err)
	}
	r, err = readRecord(filepath.Join(dir, "journal", old+".json"), filepath.Join(dir, "pending"))
	if err != nil || !r.Withdrawn || len(r.Supersedes) != 0 {
		t.Fatalf("the old version's record %+v (%v): want withdrawn, superseding nothing", r, err)
	}
	eng2.Close()

	h := startEngine(t, o)
	got := h.wait(nu)
	p.checkPublished(got, "a.txt", v2)
	waitFor(t, func() bool { return h.eng.Pending() == 0 && h.eng.Cleanups() == 0 })
	h.mu.Lock()
	if len(h.done) != 1 {
		t.Errorf("%d publications, want 1 (the new version): %v", len(h.done), h.done)
	}
	h.mu.Unlock()
	if !p.deleted(stale.ID) {
		t.Error("the stale publication was not deleted once the new version was published")
	}
	journalEmpty(t, dir)
}
