package writeback

import (
	"io"
	"os"
	"testing"
	"time"
)

// TestRenameToTemporaryThenCrash: a queued file is renamed to a temporary name (taken back: copied
// into a staging file of ours, sealed, then the queued upload cancelled), and the mount crashes after
// any engine call the rename makes (an image of the engine folder taken right after each). The next
// start from any image either finds the rename done (nothing published, the file handed back as a
// complete staging file under its temporary name, for the fs layer to show) or not done at all (the
// queued upload published under its old name, no copy left), never both. Before, a crash after the
// seal and before the cancel left the old version queued beside its copy: the next start published it
// under the name the user had renamed away, and showed the copy too.
func TestRenameToTemporaryThenCrash(t *testing.T) {
	emu, c := platform(t)
	ce := newCrashImages(t, c)
	dir := ce.dir
	s := NewSet(Options{Engine: ce, Settle: time.Hour})
	f, _ := queuedFile(t, s, "a.txt") // "content"; the engine is not started: it stays queued
	const temp = ".a.txt.Ab12Cd"      // rsync's shape
	images := ce.during(func() {
		if err := f.Rename(temp, temp); err != nil {
			t.Fatal(err)
		}
	})
	mustState(t, f, Held)
	if len(images) < 3 {
		t.Fatalf("%d engine calls taking the file back, want at least 3 (its copy, its seal, the cancel)", len(images))
	}
	ce.stop()

	renamed := false
	for i, img := range images {
		published, staged := startFromImage(t, c, img, dir)
		switch {
		case len(published) == 0 && len(staged) == 1:
			sg := staged[0]
			if sg.Record.Path != temp || !sg.Complete() {
				t.Errorf("crash after call %d: handed back %+v, want %s complete", i+1, sg, temp)
			}
			if got, err := os.ReadFile(sg.Path); err != nil || string(got) != "content" {
				t.Errorf("crash after call %d: the copy holds %q (%v), want %q", i+1, got, err, "content")
			}
			renamed = true
		case len(published) == 1 && len(staged) == 0:
			if renamed {
				t.Errorf("crash after call %d: the rename undone after an earlier crash point found it done", i+1)
			}
			if published[0].Name != "a.txt" {
				t.Errorf("crash after call %d: published as %s, want a.txt", i+1, published[0].Name)
			}
			rc, _, err := emu.Plaintext(published[0].ID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != "content" {
				t.Errorf("crash after call %d: published %q (%v)", i+1, got, err)
			}
		default:
			t.Errorf("crash after call %d: %d publications (%v) and %d staging files handed back (%+v), want the rename done or not done",
				i+1, len(published), published, len(staged), staged)
		}
	}
	if !renamed {
		t.Error("no crash point found the rename done: the last one (after the cancel) must")
	}
}
