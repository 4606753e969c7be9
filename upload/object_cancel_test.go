package upload

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/remote/remotetest"
)

// orphans lists the objects in the emulator's storage that no library file holds (deleted files
// hold nothing): what the user pays for and nothing shows.
func (p *platform) orphans() []string {
	p.t.Helper()
	_, out, err := remotetest.Library(context.Background(), p.c)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// TestCancelDeletesUnregisteredObject: a direct upload whose object S3 completed, and whose
// registration failed (the request never reached the platform), is cancelled (an rm in uploads/)
// while it waits to retry. The object is in the user's storage and no library file holds it: the
// cancel deletes it, in the running engine and, when a crash cuts the cancel's background part off,
// on the next start (the withdrawn record holds the object's key). Before, the withdrawal saw nothing
// owed (no multipart upload to abort, no publication) and dropped the record: the object stayed in
// storage for good, paid for and shown nowhere.
func TestCancelDeletesUnregisteredObject(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "running"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			fc := remotetest.NewFaulty(p.c)
			fc.Set("RegisterFile", remotetest.Fault{Err: errors.New("injected: the platform is unreachable")})
			o := p.engineOpts(dir)
			o.Client, o.SmallThreshold = fc, -1
			o.RetryMin, o.RetryMax = time.Hour, time.Hour // the failed upload waits, its object completed
			var held *withdrawHeld
			if crash {
				held = holdWithdrawals(t, &o)
			}
			h := startEngine(t, o)
			if crash {
				t.Cleanup(func() { close(held.release) }) // before the engine's Close
			}
			id := enqueue(t, h.eng, "removed.bin", randomData(160, 2*testPart+10))
			waitFor(t, func() bool {
				st, ok := h.eng.Status(id)
				return ok && st.State == StateRetrying
			})
			if n := p.e.Counters().Succeeded(emulator.EndpointS3Complete); n != 1 {
				t.Fatalf("%d multipart uploads completed, want 1", n)
			}
			if got := p.orphans(); len(got) != 1 {
				t.Fatalf("objects held by no file before the cancel: %v, want the upload's", got)
			}

			if err := h.eng.CancelNoWait(id); err != nil {
				t.Fatal(err)
			}
			eng := h.eng
			if crash {
				select {
				case <-held.reached:
				case <-time.After(time.Minute):
					t.Fatal("the cancel's background part never started")
				}
				crashAt(t, dir)
				eng = startEngine(t, p.engineOpts(dir)).eng
			}
			select { // the cancel's background part and its clean-up's first pass
			case <-eng.CancelsDone():
			case <-time.After(time.Minute):
				t.Fatal("the cancel never finished")
			}
			waitFor(t, func() bool { return eng.Pending() == 0 && eng.Cleanups() == 0 && !eng.holds(id) })
			if got := p.orphans(); len(got) != 0 {
				t.Errorf("objects left in storage that no file holds: %v", got)
			}
			if n := p.e.Counters().Succeeded(emulator.EndpointS3Delete); n != 1 {
				t.Errorf("%d objects deleted, want 1", n)
			}
			if n := p.requests(emulator.EndpointRegister); n != 0 {
				t.Errorf("%d registrations, want none", n)
			}
			journalEmpty(t, dir)
		})
	}
}

// TestRefusedObjectDeleted: the platform refuses the registration of a direct upload's completed
// object (a name it cannot store: 400, for good). The object is deleted (no file holds it, its key
// is ours) before the upload forgets it; renamed, the upload sends a new object and publishes it,
// and storage holds only that. Before, the refused object stayed in the user's storage, forgotten.
func TestRefusedObjectDeleted(t *testing.T) {
	p := newPlatform(t, false)
	p.e.RejectUploadName("refused.bin")
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = -1
	h := startEngine(t, o)
	data := randomData(161, testPart+10)
	id := enqueue(t, h.eng, "refused.bin", data)
	waitFor(t, func() bool {
		st, ok := h.eng.Status(id)
		return ok && st.State == StateRejected
	})
	if got := p.orphans(); len(got) != 0 {
		t.Errorf("objects left in storage that no file holds after the refusal: %v", got)
	}
	if err := h.eng.Rename(id, "accepted.bin"); err != nil {
		t.Fatal(err)
	}
	p.checkPublished(h.wait(id), "accepted.bin", data)
	if got := p.orphans(); len(got) != 0 {
		t.Errorf("objects left in storage that no file holds after the publication: %v", got)
	}
	if n := p.e.Counters().Succeeded(emulator.EndpointS3Complete); n != 2 {
		t.Errorf("%d multipart uploads completed, want 2 (the refused object, then a new one)", n)
	}
}

// completeLost carries S3 requests; the first CompleteMultipartUpload reaches the storage and its
// answer is lost, and every later one fails without being sent: the object is complete in storage,
// and the engine does not know it (ObjectDone never journaled).
type completeLost struct {
	sent atomic.Int32
}

func (c *completeLost) RoundTrip(r *http.Request) (*http.Response, error) {
	q := r.URL.Query()
	if r.Method != http.MethodPost || !q.Has("uploadId") {
		return http.DefaultTransport.RoundTrip(r)
	}
	if c.sent.Add(1) > 1 {
		return nil, errors.New("injected: the storage is unreachable")
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return nil, errors.New("injected: the answer to CompleteMultipartUpload is lost")
}

// TestCancelAfterLostComplete: a CompleteMultipartUpload completes the object but its answer is
// lost, and the upload is cancelled while it waits to retry. The abort finds no multipart upload
// (S3 completed it): the object, ours and held by no file, is deleted. Before, an abort answered
// NoSuchUpload was taken for done, and the object stayed in storage.
func TestCancelAfterLostComplete(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	lost := &completeLost{}
	o := p.engineOpts(dir)
	o.SmallThreshold, o.S3.HTTPClient = -1, &http.Client{Transport: lost}
	o.RetryMin, o.RetryMax = time.Hour, time.Hour
	h := startEngine(t, o)
	id := enqueue(t, h.eng, "removed.bin", randomData(162, testPart+10))
	waitFor(t, func() bool {
		st, ok := h.eng.Status(id)
		return ok && st.State == StateRetrying
	})
	if n := p.e.Counters().Succeeded(emulator.EndpointS3Complete); n != 1 {
		t.Fatalf("%d multipart uploads completed, want 1", n)
	}
	if err := h.eng.Cancel(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return h.eng.Cleanups() == 0 && !h.eng.holds(id) })
	if got := p.orphans(); len(got) != 0 {
		t.Errorf("objects left in storage that no file holds: %v", got)
	}
	if n := p.requests(emulator.EndpointRegister); n != 0 {
		t.Errorf("%d registrations, want none", n)
	}
	journalEmpty(t, dir)
}
