package upload

import (
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// heldCreate carries S3 requests, but holds the answer to a CreateMultipartUpload (the storage has
// made the upload by then) until a cancel has stopped the upload's attempt (Options.stopped). A
// request whose context has ended by then gets its error, as when the answer is lost on its way: the
// upload exists and its id is known to nobody.
type heldCreate struct {
	base    http.RoundTripper
	held    chan struct{} // closed once an answer to a create is held
	stopped chan struct{} // closed once the cancel stopped the attempt
	once    sync.Once
}

func (h *heldCreate) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := h.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost || !req.URL.Query().Has("uploads") {
		return resp, err
	}
	h.once.Do(func() { close(h.held) })
	select {
	case <-h.stopped:
	case <-req.Context().Done():
	}
	if err := req.Context().Err(); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// TestUploadCancelDuringCreateAborts: an upload withdrawn (an rm in uploads/) while the answer to its
// CreateMultipartUpload is on its way has that multipart upload aborted all the same, once the answer
// is in: a cancel never leaves an upload behind on the storage, and sends no part after it.
func TestUploadCancelDuringCreateAborts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cancel func(*Engine, string) error
	}{
		{"CancelNoWait", (*Engine).CancelNoWait},
		{"Cancel", (*Engine).Cancel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlatform(t, false)
			o := p.engineOpts(t.TempDir())
			o.SmallThreshold = -1
			hc := &heldCreate{base: http.DefaultTransport.(*http.Transport).Clone(), held: make(chan struct{}),
				stopped: make(chan struct{})}
			o.S3.HTTPClient = &http.Client{Transport: hc}
			o.stopped = func(string) { close(hc.stopped) }
			h := startEngine(t, o)
			id := enqueue(t, h.eng, "cancel.bin", randomData(11, 2*testPart))
			<-hc.held
			if err := tc.cancel(h.eng, id); err != nil {
				t.Fatal(err)
			}
			if n := h.eng.Pending(); n != 0 {
				t.Errorf("%d pending after the cancel, want 0", n)
			}
			<-h.eng.CancelsDone() // (Close would cut a create still on its way short)
			for _, d := range []string{"journal", "pending"} {
				if ents, _ := os.ReadDir(filepath.Join(o.Dir, d)); len(ents) != 0 {
					t.Errorf("%s not empty once the cancel is done: %v", d, ents)
				}
			}
			h.eng.Close()
			for endpoint, want := range map[string]int64{emulator.EndpointS3CreateMultipart: 1,
				emulator.EndpointS3Abort: 1, emulator.EndpointS3UploadPart: 0} {
				if n := p.requests(endpoint); n != want {
					t.Errorf("%s: %d requests, want %d", endpoint, n, want)
				}
			}
		})
	}
}

// TestUploadCancelsDone: CancelsDone is closed while no cancel is finishing in the background, and
// stays open while a CancelNoWait's abort is held by a platform that answers nothing, until the abort
// is answered.
func TestUploadCancelsDone(t *testing.T) {
	p := newPlatform(t, false)
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = -1
	b := newBlocker(2)
	o.beforePart = b.hook
	h := startEngine(t, o)
	select {
	case <-h.eng.CancelsDone():
	default:
		t.Fatal("CancelsDone open with no cancel")
	}
	id := enqueue(t, h.eng, "cancel.bin", randomData(12, 2*testPart))
	b.waitReached(t)
	p.e.SetFrozen(true)
	if err := h.eng.CancelNoWait(id); err != nil {
		t.Fatal(err)
	}
	done := h.eng.CancelsDone()
	waitFor(t, func() bool { return p.requests(emulator.EndpointS3Abort) == 1 }) // arrived, held
	select {
	case <-done:
		t.Fatal("CancelsDone closed while the abort is held")
	default:
	}
	p.e.SetFrozen(false)
	<-done
	if st := p.e.Counters().Statuses[emulator.EndpointS3Abort]; st[http.StatusNoContent] != 1 {
		t.Errorf("abort answers: %v, want one 204", st)
	}
}
