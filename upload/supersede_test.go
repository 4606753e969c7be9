package upload

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestSupersededDeletedOncePublished: the library files an upload supersedes (publications under a
// name its file has left) are journaled with it, so a restart keeps them, and are deleted once the
// upload is published: not while its publishing request is on its way (until then they hold the only
// copy on the platform), and only the ones named.
func TestSupersededDeletedOncePublished(t *testing.T) {
	p := newPlatform(t, false)
	ctx := context.Background()
	data := randomData(90, 3000)
	stale, err := p.c.UploadSmall(ctx, "draft.txt", bytes.NewReader(data), int64(len(data)), remote.TypeInput)
	if err != nil {
		t.Fatal(err)
	}
	other, err := p.c.UploadSmall(ctx, "draft.txt", bytes.NewReader(data), int64(len(data)), remote.TypeInput)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	eng, err := New(p.engineOpts(dir)) // never started: the booking must outlive it
	if err != nil {
		t.Fatal(err)
	}
	id := enqueue(t, eng, "final.txt", data)
	if err := eng.Supersede(id, stale.ID); err != nil {
		t.Fatal(err)
	}
	if err := eng.Supersede("nope", stale.ID); !errors.Is(err, ErrUnknown) {
		t.Errorf("Supersede of an unknown upload: %v, want ErrUnknown", err)
	}
	eng.Close()

	p.e.SetFrozen(true) // the publishing request is held
	h := startEngine(t, p.engineOpts(dir))
	waitFor(t, func() bool { return p.requests(emulator.EndpointUpload) >= 1 })
	if n := p.requests(emulator.EndpointFileDelete); n != 0 {
		t.Errorf("%d deletions while the new version's publishing request is on its way, want 0", n)
	}
	p.e.SetFrozen(false)
	p.checkPublished(h.wait(id), "final.txt", data)
	if n := p.requests(emulator.EndpointFileDelete); n != 1 {
		t.Errorf("%d deletions, want 1", n)
	}
	for _, c := range []struct {
		f       remote.File
		deleted bool
	}{{stale, true}, {other, false}} {
		if f, err := p.c.GetFile(ctx, c.f.ID); err != nil || f.IsDeleted != c.deleted {
			t.Errorf("file %s after the publication: deleted %v (%v), want %v", c.f.ID, f.IsDeleted, err, c.deleted)
		}
	}
}
