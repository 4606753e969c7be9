package upload

import (
	"os"
	"path/filepath"
	"testing"

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
		if err := copyTree(dir, img); err != nil {
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
