package upload

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// Stale publications: a file renamed in uploads/ while its publishing request was out is published
// under the name it left too; rescalefs deletes that stale copy once the file is published under its
// name, and never leaves it behind, whatever happens in between.

// firstAnswerHeld lets the first small upload reach the platform and holds its answer until release
// (or the request's context ends); the later ones wait before they are sent, until their context ends.
type firstAnswerHeld struct {
	*remote.Client
	calls   atomic.Int32
	fileID  atomic.Value // string: the file the first request stored
	release chan struct{}
}

func (a *firstAnswerHeld) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error) {
	if a.calls.Add(1) > 1 {
		<-ctx.Done()
		return remote.File{}, ctx.Err()
	}
	f, err := a.Client.UploadSmall(ctx, name, r, size, typeID)
	if err != nil {
		return f, err
	}
	a.fileID.Store(f.ID)
	select {
	case <-a.release:
		return f, nil
	case <-ctx.Done():
		return remote.File{}, ctx.Err()
	}
}

// uploadStale publishes data as name straight through the client: a publication standing for one an
// earlier upload made under a name its file has left.
func (p *platform) uploadStale(name string, data []byte) remote.File {
	p.t.Helper()
	f, err := p.c.UploadSmall(context.Background(), name, bytes.NewReader(data), int64(len(data)), remote.TypeInput)
	if err != nil {
		p.t.Fatal(err)
	}
	return f
}

func (p *platform) deleted(id string) bool {
	p.t.Helper()
	f, err := p.c.GetFile(context.Background(), id)
	if err != nil {
		p.t.Fatal(err)
	}
	return f.IsDeleted
}

// TestStaleCrashBeforeNextVersion (case a): a file renamed while its publishing request was out is
// published under the name it left; the mount stops (or crashes) right after. The next start
// publishes it under its new name and deletes the stale copy: the engine books the stale file and
// queues the upload again under its new name in one journal write, rather than reporting the upload
// done and leaving the next version to the fs layer's memory. Before, the record was removed as done
// and the stale copy stayed, the new name never published.
func TestStaleCrashBeforeNextVersion(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	held := &firstAnswerHeld{Client: p.c, release: make(chan struct{})}
	o := p.engineOpts(dir)
	o.Client = held
	h := startEngine(t, o)
	data := randomData(97, 2500)
	id := enqueue(t, h.eng, "draft.txt", data)
	waitFor(t, func() bool { return held.fileID.Load() != nil })
	if err := h.eng.Rename(id, "final.txt"); !errors.Is(err, ErrPublishing) {
		t.Fatalf("rename while publishing: %v, want ErrPublishing", err)
	}
	close(held.release)
	waitFor(t, func() bool { return held.calls.Load() >= 2 }) // the new name's request is on its way
	h.eng.Close()                                             // the mount stops: only the journal is left
	h.mu.Lock()
	if len(h.done) != 0 {
		t.Errorf("the publication under the name the file left was reported as the upload's: %v", h.done)
	}
	h.mu.Unlock()

	h = startEngine(t, p.engineOpts(dir))
	f := h.wait(id)
	p.checkPublished(f, "final.txt", data)
	stale := held.fileID.Load().(string)
	if !p.deleted(stale) {
		t.Error("the stale publication under draft.txt stays in the library")
	}
	if p.deleted(f.ID) {
		t.Error("the current version was deleted")
	}
	if n := p.requests(emulator.EndpointFileDelete); n != 1 {
		t.Errorf("%d deletions, want 1", n)
	}
	waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
	journalEmpty(t, dir)
}

// TestStaleDeleteFails (case b): the deletion of a superseded file fails (the platform answers 5xx to
// every DELETE, past the client's retries). The file stays booked in the journal, and is deleted once
// the platform takes DELETEs again, here by the next start. Before, the failure was logged and the
// stale copy stayed for good.
func TestStaleDeleteFails(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	data := randomData(98, 2000)
	stale := p.uploadStale("draft.txt", data)
	p.e.SetFaults(emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointFileDelete}})

	eng, err := New(p.engineOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	id := enqueue(t, eng, "final.txt", data)
	if err := eng.Supersede(id, stale.ID); err != nil {
		t.Fatal(err)
	}
	eng.Close()
	h := startEngine(t, p.engineOpts(dir))
	f := h.wait(id)
	p.checkPublished(f, "final.txt", data)
	if n := h.eng.Cleanups(); n != 1 {
		t.Fatalf("%d clean-ups after the failed deletion, want 1", n)
	}
	if p.deleted(stale.ID) {
		t.Fatal("deleted through a fault")
	}
	h.eng.Close()
	if ents, _ := os.ReadDir(filepath.Join(dir, "journal")); len(ents) == 0 {
		t.Fatal("the deletion still owed is not journaled")
	}

	p.e.SetFaults(emulator.Faults{})
	h = startEngine(t, p.engineOpts(dir))
	waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
	if !p.deleted(stale.ID) {
		t.Error("the stale publication stays in the library")
	}
	if p.deleted(f.ID) {
		t.Error("the current version was deleted")
	}
	journalEmpty(t, dir)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.done) != 0 {
		t.Errorf("published again after the restart: %v", h.done)
	}
}

// TestStaleFileRemoved (case c): a file with a stale publication (renamed while it was being
// published) is removed from uploads/ before its new version is published. Nothing will replace the
// stale copy, and the user removed the file: it is deleted (journaled first, so a restart deletes it
// too), and nothing else: the library had no other version of it. Before, the withdrawal dropped the
// booking and the stale copy stayed.
func TestStaleFileRemoved(t *testing.T) {
	for _, restart := range []bool{false, true} {
		name := "same life"
		if restart {
			name = "restarted"
		}
		t.Run(name, func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			data := randomData(99, 2200)
			stale := p.uploadStale("draft.txt", data)
			other := p.uploadStale("other.txt", data) // not ours to delete

			eng, err := New(p.engineOpts(dir)) // not started: the new version is not published
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { eng.Close() })
			id := enqueue(t, eng, "final.txt", data)
			if err := eng.Supersede(id, stale.ID); err != nil {
				t.Fatal(err)
			}
			if err := eng.Cancel(id); err != nil {
				t.Fatal(err)
			}
			if eng.Pending() != 0 {
				t.Fatalf("%d pending after the cancel", eng.Pending())
			}
			if restart {
				eng.Close()
				if eng, err = New(p.engineOpts(dir)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { eng.Close() })
			}
			eng.Start(context.Background())
			waitFor(t, func() bool { return eng.Cleanups() == 0 })
			if !p.deleted(stale.ID) {
				t.Error("the stale publication of the removed file stays in the library")
			}
			if p.deleted(other.ID) {
				t.Error("a file rescalefs did not book was deleted")
			}
			if n := p.requests(emulator.EndpointFileDelete); n != 1 {
				t.Errorf("%d deletions, want 1", n)
			}
			if n := p.requests(emulator.EndpointUpload); n != 2 { // the two made by the test
				t.Errorf("%d uploads, want the test's 2", n)
			}
			journalEmpty(t, dir)
		})
	}
}

// TestCancelAbortRetried: the abort of a cancelled multipart upload that the storage does not take
// within the cancel's bound (every abort answered 5xx) is journaled with the withdrawn upload and
// retried until the storage takes it. Before, the cancel logged it and the upload was abandoned.
func TestCancelAbortRetried(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	h, id := startMidMultipart(t, p, dir, "abort.bin", randomData(101, 2*testPart))
	p.e.SetFaults(emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointS3Abort}})
	if err := h.eng.Cancel(id); err != nil {
		t.Fatal(err)
	}
	if n := h.eng.Cleanups(); n != 1 {
		t.Fatalf("%d clean-ups after an abort refused, want 1", n)
	}
	p.e.SetFaults(emulator.Faults{})
	waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
	if ok := p.e.Counters().Succeeded(emulator.EndpointS3Abort); ok != 1 {
		t.Errorf("%d aborts taken, want 1", ok)
	}
	if n := p.requests(emulator.EndpointRegister); n != 0 {
		t.Errorf("the cancelled upload was registered %d times", n)
	}
	journalEmpty(t, dir)
}
