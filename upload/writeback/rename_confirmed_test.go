package writeback

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// laterHeld lets the first small upload through and holds every later one before it is sent, until
// the request's context ends: the engine that would publish again is cut before it reaches the
// platform (the crash case restarts from a copy of its folder instead).
type laterHeld struct {
	*remote.Client
	calls atomic.Int32
}

func (l *laterHeld) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error) {
	if l.calls.Add(1) > 1 {
		<-ctx.Done()
		return remote.File{}, ctx.Err()
	}
	return l.Client.UploadSmall(ctx, name, r, size, typeID)
}

// TestRenameRacingConfirmation: a queued file renamed in uploads/ after the platform confirmed its
// publication under the old name, before the fs layer took that confirmation (the rename comes
// while the engine's OnDone runs). The file must end published under its new name, and the
// publication under the old one deleted; in the same life, and after a crash at that instant (the
// engine's folder as it was then, the fs layer's memory gone). Before, the engine had removed the
// upload's record and data before it told the fs layer, which alone knew of the rename and queued a
// copy of the file after the settle time (2 s): a crash in that window lost the file's new name (no
// record, no staging file: nothing to publish after the restart) and left it published under the
// name the user had left.
func TestRenameRacingConfirmation(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "same life"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			emu, c := platform(t)
			dir, snap := t.TempDir(), t.TempDir()
			var client upload.Platform = c
			if crash {
				client = &laterHeld{Client: c}
			}
			var s atomic.Pointer[Set]
			var file atomic.Pointer[File]
			var first atomic.Bool
			published := make(chan upload.Status, 4)
			eng, err := upload.New(upload.Options{Client: client, Dir: dir, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
				OnDone: func(st upload.Status, _ remote.File) {
					if !first.Swap(true) {
						// The user's rename, before the fs layer takes the confirmation.
						if err := file.Load().Rename("b.txt", "b.txt"); err != nil {
							t.Error(err)
						}
						if crash {
							if err := testutil.CopyTree(dir, snap); err != nil { // what a crash now leaves on disk
								t.Fatal(err)
							}
						}
					}
					s.Load().Done(st)
					published <- st
				}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { eng.Close() })
			s.Store(NewSet(Options{Engine: eng, Settle: time.Hour})) // the settle time outlasts the test
			f, id := queuedFile(t, s.Load(), "a.txt")
			file.Store(f)
			eng.Start(context.Background())
			old := <-published
			if old.Name != "a.txt" {
				t.Fatalf("first confirmation %+v, want a.txt", old)
			}

			if crash {
				eng.Close()
				s.Load().SettleAll(true)
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				if err := testutil.CopyTree(snap, dir); err != nil {
					t.Fatal(err)
				}
				done := make(chan remote.File, 4)
				eng2, err := upload.New(upload.Options{Client: c, Dir: dir, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
					OnDone: func(_ upload.Status, f remote.File) { done <- f }})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { eng2.Close() })
				snapshot := eng2.Snapshot()
				if len(snapshot) != 1 || snapshot[0].Name != "b.txt" || snapshot[0].State != upload.StateQueued {
					t.Fatalf("after the crash the engine holds %+v, want b.txt queued", snapshot)
				}
				eng2.Start(context.Background())
				select {
				case nf := <-done:
					if nf.Name != "b.txt" {
						t.Errorf("published after the restart as %q, want b.txt", nf.Name)
					}
				case <-time.After(time.Minute):
					t.Fatal("never published under its new name after the restart")
				}
				testutil.Eventually(t, time.Minute, "the clean-ups", func() bool { return eng2.Cleanups() == 0 })
			} else {
				select {
				case st := <-published:
					if st.ID != id || st.Name != "b.txt" {
						t.Errorf("published %+v, want upload %s as b.txt", st, id)
					}
				case <-time.After(time.Minute):
					t.Fatal("never published under its new name")
				}
				mustState(t, f, Published)
				testutil.Eventually(t, time.Minute, "the clean-ups", func() bool { return eng.Cleanups() == 0 })
			}
			if got, err := c.GetFile(context.Background(), old.FileID); err != nil || !got.IsDeleted {
				t.Errorf("the publication under a.txt: deleted %v (%v), want deleted", got.IsDeleted, err)
			}
			if n := emu.Counters().Requests[emulator.EndpointUpload]; n != 2 {
				t.Errorf("%d uploads reached the platform, want 2 (a.txt, then b.txt)", n)
			}
			if n := emu.Counters().Requests[emulator.EndpointFileDelete]; n != 1 {
				t.Errorf("%d deletions, want 1", n)
			}
			// The record goes once OnDone has returned.
			testutil.Eventually(t, time.Minute, "an empty journal", func() bool {
				for _, d := range []string{"pending", "journal"} {
					if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) != 0 {
						return false
					}
				}
				return true
			})
		})
	}
}

// TestRemoveRacingConfirmation: a queued file removed from uploads/ after the platform confirmed its
// publication, before the fs layer took that confirmation (the removal comes while the engine's
// OnDone runs). uploads/ said the file is gone before it left for files/, so the publication is
// deleted, as for a removal while the publishing request is out. Before, the engine had forgotten
// the upload by then: the removal withdrew nothing and the file stayed published.
func TestRemoveRacingConfirmation(t *testing.T) {
	emu, c := platform(t)
	dir := t.TempDir()
	var s atomic.Pointer[Set]
	var file atomic.Pointer[File]
	published := make(chan upload.Status, 4)
	eng, err := upload.New(upload.Options{Client: c, Dir: dir, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		OnDone: func(st upload.Status, _ remote.File) {
			file.Load().Remove() // the user's rm, before the fs layer takes the confirmation
			if got := s.Load().Done(st); got != nil {
				t.Error("a removed file was taken out of uploads/ as published")
			}
			published <- st
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	s.Store(NewSet(Options{Engine: eng, Settle: time.Hour}))
	f, _ := queuedFile(t, s.Load(), "a.txt")
	file.Store(f)
	eng.Start(context.Background())
	st := <-published
	mustState(t, f, Cancelled)
	select {
	case <-eng.CancelsDone():
	case <-time.After(time.Minute):
		t.Fatal("the cancel never finished")
	}
	testutil.Eventually(t, time.Minute, "the clean-ups", func() bool { return eng.Cleanups() == 0 })
	if got, err := c.GetFile(context.Background(), st.FileID); err != nil || !got.IsDeleted {
		t.Errorf("the removed file's publication: deleted %v (%v), want deleted", got.IsDeleted, err)
	}
	if n := emu.Counters().Requests[emulator.EndpointFileDelete]; n != 1 {
		t.Errorf("%d deletions, want 1", n)
	}
	if n := eng.Pending(); n != 0 {
		t.Errorf("%d pending, want 0", n)
	}
	testutil.Eventually(t, time.Minute, "an empty journal", func() bool {
		for _, d := range []string{"pending", "journal"} {
			if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) != 0 {
				return false
			}
		}
		return true
	})
}
