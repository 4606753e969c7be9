package upload

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote"
)

// TestVersionPublicationHandedOver: upload a.txt (direct) is published while a newer version of its
// file is in staging (its record replaces the upload; the file was renamed b.txt meanwhile). The
// publication is a version the user replaced, under a name the user left: it is booked in the newer
// version's staging record, carried into its upload when that is queued, and deleted, with the
// object it holds, once b.txt is published. With a crash as the confirmation is told (the done record
// journaled, nothing booked yet) the next start books it (load); so too when the newer version was
// queued already as the confirmation came (its record replacing the upload: load finds it whatever
// the order of the records' names). Before, a.txt stayed in the library, and after the crash nothing
// knew of it.
func TestVersionPublicationHandedOver(t *testing.T) {
	for _, c := range []struct{ crash, queued bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		crash := c.crash
		t.Run(fmt.Sprintf("crash=%v/newer version queued=%v", c.crash, c.queued), func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			img := filepath.Join(t.TempDir(), "image")
			done := make(chan remote.File, 4)
			o := p.engineOpts(dir)
			o.SmallThreshold = -1
			var eng *Engine
			var staging, queued, v1id string
			var imaged bool // OnDone runs on the engine's goroutines, one at a time here
			o.OnDone = func(_ Status, f remote.File) {
				if c.queued && queued == "" && f.Name == "a.txt" { // the newer version queued meanwhile
					id, err := eng.EnqueueVersion(staging, "b.txt", 0, "", v1id)
					if err != nil {
						t.Error(err)
					}
					queued = id
				}
				if crash && !imaged {
					imaged = true
					if err := testutil.CopyTree(dir, img); err != nil { // what a crash now leaves
						t.Error(err)
					}
					p.e.SetFrozen(true) // and what the crashed engine does next never reaches the platform
				}
				done <- f
			}
			eng, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { eng.Close() })
			v1 := enqueue(t, eng, "a.txt", randomData(181, 700))
			v1id = v1
			v2 := randomData(182, 900)
			sf, err := eng.CreateStaging()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sf.Write(v2); err != nil {
				t.Fatal(err)
			}
			sf.Close()
			staging = sf.Name()
			if err := eng.RecordStaging(staging, StagingRecord{Path: "b.txt", Closed: true, Size: int64(len(v2)), Replaces: v1}); err != nil {
				t.Fatal(err)
			}
			eng.Start(context.Background())
			old := <-done
			waitFor(t, func() bool { return !eng.holds(v1) })

			if crash {
				eng.Close()
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := os.Rename(img, dir); err != nil {
					t.Fatal(err)
				}
				if eng, err = New(o); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { eng.Close() })
				p.e.SetFrozen(false)
				if staged := eng.TakeStaged(); len(staged) == 1 {
					staging = staged[0].Path
				}
				eng.Start(context.Background())
			}
			id := queued
			if !c.queued {
				r, err := readStagingRecord(staging + stagingExt)
				if err != nil || !slices.Contains(r.Supersedes, old.ID) || len(r.Dropped) != 1 {
					t.Fatalf("the newer version's record: %+v (%v), want a.txt's publication %s and its object booked", r, err, old.ID)
				}
				if id, err = eng.Enqueue(staging, "b.txt"); err != nil {
					t.Fatal(err)
				}
			}
			var cur remote.File
			for cur = range done {
				if cur.Name == "b.txt" {
					break
				}
			}
			waitFor(t, func() bool { return !eng.holds(id) && eng.Cleanups() == 0 })
			p.checkPublished(cur, "b.txt", v2)
			if !p.deleted(old.ID) {
				t.Error("a.txt's publication stays in the library")
			}
			if got := p.orphans(); len(got) != 0 {
				t.Errorf("objects left in storage that no file holds: %v", got)
			}
			journalEmpty(t, dir)
		})
	}
}
