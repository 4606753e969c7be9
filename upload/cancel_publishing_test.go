package upload

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// answerHeld is the platform client, whose publishing requests (small uploads and registrations)
// reach the platform (the file is stored) and whose answers are then held until released, or until the
// request's context ends: a publishing request on its way back. With release nil the answer is lost.
type answerHeld struct {
	*remote.Client
	stored   atomic.Int32
	answered atomic.Int32 // answers let through
	fileID   atomic.Value // string: the id of the last file stored
	release  chan struct{}
}

func (a *answerHeld) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error) {
	f, err := a.Client.UploadSmall(ctx, name, r, size, typeID)
	return a.hold(ctx, f, err)
}

func (a *answerHeld) RegisterFile(ctx context.Context, reg remote.FileRegistration) (remote.File, error) {
	f, err := a.Client.RegisterFile(ctx, reg)
	return a.hold(ctx, f, err)
}

func (a *answerHeld) hold(ctx context.Context, f remote.File, err error) (remote.File, error) {
	if err != nil {
		return f, err
	}
	a.fileID.Store(f.ID)
	a.stored.Add(1)
	select {
	case <-a.release:
		a.answered.Add(1)
		return f, nil
	case <-ctx.Done():
		return remote.File{}, ctx.Err()
	}
}

// TestCancelWhilePublishing: an upload cancelled (its file removed or replaced in uploads/) while
// its publishing request is on its way, which the platform stores all the same. The cancel does not
// cut that request, so the engine learns the file's id, and deletes it: the library does not keep a
// version the user removed or replaced, and nobody is told it was published. Before, the cancel cut
// the request and the stored file stayed in the library, unknown (TestUploadRename met the other
// half: the answer came first and the cancelled version was reported as published).
func TestCancelWhilePublishing(t *testing.T) {
	p := newPlatform(t, false)
	held := &answerHeld{Client: p.c, release: make(chan struct{})}
	o := p.engineOpts(t.TempDir())
	o.Client = held
	h := startEngine(t, o)
	id := enqueue(t, h.eng, "replaced.txt", randomData(95, 2000))
	waitFor(t, func() bool { return held.stored.Load() == 1 })
	if err := h.eng.CancelNoWait(id); err != nil {
		t.Fatal(err)
	}
	close(held.release)
	select {
	case <-h.eng.CancelsDone():
	case <-time.After(60 * time.Second):
		t.Fatal("the cancel never finished")
	}
	files, err := p.c.LibraryFiles(context.Background(), "replaced.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !f.IsDeleted {
			t.Errorf("the cancelled upload's publication stays in the library: %+v", f)
		}
	}
	if n := p.requests(emulator.EndpointFileDelete); n != 1 {
		t.Errorf("%d file deletions, want 1", n)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.done) != 0 {
		t.Errorf("a cancelled upload was reported published: %v", h.done)
	}
}

// TestCancelWhilePublishingReturns: a cancel (Ctrl-C of a job's inputs, an rm in uploads/, an
// unmount) while the publishing request is out and the platform holds its answer returns without
// waiting for that answer (at most cancelWait), and what the request published is deleted all the
// same: when the answer comes in later, and when the engine is closed first and a new one started
// (the withdrawn upload is journaled, and the new engine finds the publication, a direct upload's
// holding the object it stored, and deletes it). Before, the cancel waited for the answer (up to the
// client's retries, about a minute).
func TestCancelWhilePublishingReturns(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "answered"
		if restart {
			name = "restarted"
		}
		t.Run(name, func(t *testing.T) {
			p := newPlatform(t, false)
			held := &answerHeld{Client: p.c, release: make(chan struct{})}
			dir := t.TempDir()
			o := p.engineOpts(dir)
			o.Client = held
			if restart {
				// A lost small upload's publication cannot be told from another tool's and is left
				// (TestLostPublicationOtherToolKept); a direct upload's holds our object.
				o.SmallThreshold = -1
			}
			h := startEngine(t, o)
			id := enqueue(t, h.eng, "withdrawn.txt", randomData(96, 3000))
			waitFor(t, func() bool { return held.stored.Load() == 1 })
			returned := make(chan error, 1)
			go func() { returned <- h.eng.Cancel(id) }()
			select {
			case err := <-returned:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(60 * time.Second):
				close(held.release)
				t.Fatal("the cancel waits for the publishing request's held answer")
			}
			if held.answered.Load() != 0 {
				t.Fatal("the answer was let through before the cancel returned")
			}
			if h.eng.Pending() != 0 {
				t.Errorf("%d pending after the cancel", h.eng.Pending())
			}
			fileID := held.fileID.Load().(string)
			if restart {
				h.eng.Close() // cuts the request: its answer is lost
				ents, _ := os.ReadDir(filepath.Join(dir, "journal"))
				if len(ents) == 0 {
					t.Fatal("nothing journaled of a withdrawn upload whose publication may have landed")
				}
				o = p.engineOpts(dir)
				o.SmallThreshold = -1
				h = startEngine(t, o)
			} else {
				close(held.release)
			}
			waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
			if f, err := p.c.GetFile(context.Background(), fileID); err != nil || !f.IsDeleted {
				t.Errorf("the withdrawn upload's publication: deleted %v (%v), want deleted", f.IsDeleted, err)
			}
			if n := p.requests(emulator.EndpointFileDelete); n != 1 {
				t.Errorf("%d file deletions, want 1", n)
			}
			published := p.requests(emulator.EndpointUpload)
			if restart {
				published = p.requests(emulator.EndpointRegister)
			}
			if published != 1 {
				t.Errorf("%d publishing requests, want 1", published)
			}
			for _, d := range []string{"pending", "journal"} {
				if ents, _ := os.ReadDir(filepath.Join(dir, d)); len(ents) != 0 {
					t.Errorf("%s not empty after the clean-up: %v", d, ents)
				}
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.done) != 0 {
				t.Errorf("a cancelled upload was reported published: %v", h.done)
			}
		})
	}
}

// firstHeld lets every publishing request through, except that it holds the first one's answer (the
// file stored) until the request's context ends.
type firstHeld struct {
	*remote.Client
	calls  atomic.Int32
	fileID atomic.Value // string: the file the first request stored
}

func (a *firstHeld) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error) {
	first := a.calls.Add(1) == 1
	f, err := a.Client.UploadSmall(ctx, name, r, size, typeID)
	return a.hold(ctx, first, f, err)
}

func (a *firstHeld) RegisterFile(ctx context.Context, reg remote.FileRegistration) (remote.File, error) {
	first := a.calls.Add(1) == 1
	f, err := a.Client.RegisterFile(ctx, reg)
	return a.hold(ctx, first, f, err)
}

func (a *firstHeld) hold(ctx context.Context, first bool, f remote.File, err error) (remote.File, error) {
	if err != nil || !first {
		return f, err
	}
	a.fileID.Store(f.ID)
	<-ctx.Done()
	return remote.File{}, ctx.Err()
}

// TestCancelWhilePublishingKeepsCurrent: a file written again with the same bytes while its first
// version's publishing request is out (the first version cancelled, its answer then lost to a
// restart): the new version is published under the same name with the same content, so the look for
// the lost publication finds both. Only the cancelled one is deleted, the one holding the object the
// cancelled upload stored; the current version stays.
func TestCancelWhilePublishingKeepsCurrent(t *testing.T) {
	p := newPlatform(t, false)
	fh := &firstHeld{Client: p.c}
	dir := t.TempDir()
	o := p.engineOpts(dir)
	o.Client, o.SmallThreshold = fh, -1
	h := startEngine(t, o)
	data := randomData(100, 1800)
	first := enqueue(t, h.eng, "same.txt", data)
	waitFor(t, func() bool { return fh.fileID.Load() != nil })
	if err := h.eng.Cancel(first); err != nil {
		t.Fatal(err)
	}
	current := h.wait(enqueue(t, h.eng, "same.txt", data))
	h.eng.Close() // the first request's answer is lost

	o = p.engineOpts(dir)
	o.SmallThreshold = -1
	h = startEngine(t, o)
	waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
	if !p.deleted(fh.fileID.Load().(string)) {
		t.Error("the cancelled version's publication stays in the library")
	}
	if p.deleted(current.ID) {
		t.Error("the current version was deleted")
	}
	if n := p.requests(emulator.EndpointFileDelete); n != 1 {
		t.Errorf("%d deletions, want 1", n)
	}
	journalEmpty(t, dir)
}
