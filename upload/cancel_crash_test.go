package upload

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// crashAt replaces the engine folder dir by a copy of itself as it is now: what a crash (kill -9 of
// the mount) at this moment would leave for the next start, at the same place (the journal holds
// absolute paths). The running engine keeps its open files in the old folder, moved aside, but
// opens any other by its path: the test holds it still until it ends.
func crashAt(t *testing.T, dir string) {
	t.Helper()
	img := dir + ".image"
	err := testutil.CopyTree(dir, img)
	if err == nil {
		err = os.Rename(dir, dir+".crashed")
	}
	if err == nil {
		err = os.Rename(img, dir)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// withdrawHeld holds the background part of every cancel (CancelNoWait) until the test ends: the
// cancel has returned to its caller (an unlink in uploads/), and nothing after it has run yet.
type withdrawHeld struct {
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func holdWithdrawals(t *testing.T, o *Options) *withdrawHeld {
	w := &withdrawHeld{reached: make(chan struct{}), release: make(chan struct{})}
	o.beforeWithdraw = func(string) {
		w.once.Do(func() { close(w.reached) })
		<-w.release
	}
	return w
}

// TestCancelSurvivesCrash: a cancel (an rm in uploads/) followed at once by a crash. CancelNoWait
// returns before its background part (which waits for the running attempt, up to cancelWait) has
// journaled anything; the crash is taken right then (a copy of the engine folder, the background
// part still held). The next start from that folder must not publish the removed file, and must
// delete or abort what the cancelled upload had put on the platform. Before, the journal still held
// the upload as queued: the next start published it (resumed its parts and registered it, or found
// its publication and reported it done), a file the user had removed.
func TestCancelSurvivesCrash(t *testing.T) {
	for _, c := range []struct {
		name  string
		small int64 // SmallThreshold
		size  int
		// how far the upload got before the cancel: "queued" (the engine not started), "parts" (a
		// multipart upload held before its second part), "publishing" (the publishing request
		// stored the file, its answer held)
		at         string
		registered int64 // registrations the platform takes, all engines together
		uploaded   int64 // small uploads the platform takes, all engines together
		aborted    bool  // the multipart upload is aborted by the next start
		deleted    bool  // the publication is deleted by the next start
		kept       bool  // the publication is left in the library, and shown (Kept)
	}{
		{name: "queued", size: 1500, at: "queued"},
		{name: "parts", small: -1, size: 2*testPart + 10, at: "parts", aborted: true},
		{name: "publishing-multipart", small: -1, size: testPart + 10, at: "publishing", registered: 1, deleted: true},
		// A small upload's publication cannot be told from another tool's upload of the same bytes
		// (TestLostPublicationOtherToolKept): left in the library, and shown.
		{name: "publishing-small", size: 2500, at: "publishing", uploaded: 1, kept: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			o := p.engineOpts(dir)
			o.SmallThreshold = c.small
			held := holdWithdrawals(t, &o)
			lost := &answerHeld{Client: p.c} // never released: the answer is lost to the crash
			var eng *Engine
			var id string
			data := randomData(140, c.size)
			switch c.at {
			case "queued":
				var err error
				if eng, err = New(o); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { eng.Close() })
				id = enqueue(t, eng, "removed.txt", data)
			case "parts": // as startMidMultipart, with the cancels held
				b := newBlocker(2)
				// One part at a time: none is in flight but the one held, so this engine does nothing
				// more until the test ends (it would write into the folder the next start uses).
				o.beforePart, o.UploadParallel = b.hook, 1
				eng = startEngine(t, o).eng
				id = enqueue(t, eng, "removed.txt", data)
				b.waitReached(t)
			case "publishing":
				o.Client = lost
				h := startEngine(t, o)
				eng = h.eng
				id = enqueue(t, eng, "removed.txt", data)
				waitFor(t, func() bool { return lost.stored.Load() == 1 })
			}
			t.Cleanup(func() { close(held.release) }) // before the engine's Close (cleanups run last first)

			if err := eng.CancelNoWait(id); err != nil {
				t.Fatal(err)
			}
			select {
			case <-held.reached:
			case <-time.After(time.Minute):
				t.Fatal("the cancel's background part never started")
			}
			crashAt(t, dir)

			o2 := p.engineOpts(dir)
			o2.SmallThreshold = c.small
			h2 := startEngine(t, o2)
			// Nothing pending, no clean-up left, and the upload gone (a published one is held until
			// OnDone has returned).
			waitFor(t, func() bool { return h2.eng.Pending() == 0 && h2.eng.Cleanups() == 0 && !h2.eng.holds(id) })
			h2.mu.Lock()
			if len(h2.done) != 0 {
				t.Errorf("the removed file was published after the crash: %v", h2.done)
			}
			h2.mu.Unlock()
			if n := p.requests(emulator.EndpointRegister); n != c.registered {
				t.Errorf("%d registrations, want %d", n, c.registered)
			}
			if n := p.requests(emulator.EndpointUpload); n != c.uploaded {
				t.Errorf("%d small uploads, want %d", n, c.uploaded)
			}
			if got := p.e.Counters().Succeeded(emulator.EndpointS3Abort) == 1; got != c.aborted {
				t.Errorf("multipart upload aborted: %v, want %v", got, c.aborted)
			}
			if c.at == "publishing" {
				ours := lost.fileID.Load().(string)
				if got := p.deleted(ours); got != c.deleted {
					t.Errorf("the publication deleted: %v, want %v", got, c.deleted)
				}
				kept := h2.eng.Kept()
				if got := len(kept) == 1 && kept[0].FileID == ours && kept[0].Name == "removed.txt"; got != c.kept {
					t.Errorf("kept %+v, want the publication %v", kept, c.kept)
				}
			}
			// A direct upload's object goes with the upload (a small upload's is the platform's,
			// held by its kept publication).
			if got := p.orphans(); len(got) != 0 {
				t.Errorf("objects left in storage that no file holds: %v", got)
			}
			journalEmpty(t, dir)
		})
	}
}
