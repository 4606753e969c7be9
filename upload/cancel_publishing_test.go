package upload

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// answerHeld is the platform client, whose small uploads reach the platform (the file is stored) and
// whose answers are then held until released, or until the request's context ends: a publishing
// request on its way back.
type answerHeld struct {
	*remote.Client
	stored  atomic.Int32
	release chan struct{}
}

func (a *answerHeld) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error) {
	f, err := a.Client.UploadSmall(ctx, name, r, size, typeID)
	if err != nil {
		return f, err
	}
	a.stored.Add(1)
	select {
	case <-a.release:
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
