package remote

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// slowSource is an upload source whose Read at blockAt blocks as a pipe's read does: until the body it
// feeds is closed (release), or until the call that was given the source returned (then the read
// outlived the call: late), or until ctx ends (the test's watchdog).
type slowSource struct {
	ctx      context.Context
	data     []byte
	off      int
	blockAt  int
	didBlock bool
	blocked  chan struct{} // closed when the slow Read starts
	inSlow   atomic.Bool   // the slow Read is in progress
	release  chan struct{} // closed when the body the source feeds is closed (closingTransport)
	returned chan struct{} // closed by the test once the call returned
	late     atomic.Int64  // Reads in progress when the call returned, or started after it
}

func newSlowSource(ctx context.Context, data []byte, blockAt int) *slowSource {
	return &slowSource{ctx: ctx, data: data, blockAt: blockAt,
		blocked: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
}

func (s *slowSource) Read(p []byte) (int, error) {
	select {
	case <-s.returned:
		s.late.Add(1)
	default:
	}
	if s.off >= len(s.data) {
		return 0, io.EOF
	}
	if s.off >= s.blockAt && !s.didBlock {
		s.didBlock = true
		s.inSlow.Store(true)
		close(s.blocked)
		select {
		case <-s.returned:
			s.late.Add(1)
		case <-s.release:
		case <-s.ctx.Done():
			s.inSlow.Store(false)
			return 0, s.ctx.Err()
		}
		s.inSlow.Store(false)
	}
	n := copy(p, s.data[s.off:])
	s.off += n
	return n, nil
}

// closingTransport sits above the client's guard and puts each request body behind one whose Close
// calls onClose. The guard lends that body to the transport below and closes it when the loan ends,
// before it waits for a Read in progress (what ends a Read that waits on a pipe).
type closingTransport struct {
	next    http.RoundTripper
	onClose func()
}

func (t *closingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		r2 := *req // RoundTrip must not change the caller's request
		r2.Body = &closeHook{ReadCloser: req.Body, onClose: t.onClose}
		req = &r2
	}
	return t.next.RoundTrip(req)
}

type closeHook struct {
	io.ReadCloser
	onClose func()
	once    sync.Once
}

func (b *closeHook) Close() error {
	b.once.Do(b.onClose)
	return b.ReadCloser.Close()
}

// earlyServer answers UploadSmall's POST as soon as the source's slow Read has started, without reading
// the rest of the body, as the platform answers an error, a 429 or a duplicate before
// it read a body: the transport is then still sending the body when the call has its answer.
func earlyServer(t *testing.T, src *slowSource, requests *atomic.Int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-src.blocked:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(File{ID: "early", Name: "a.bin"})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestBodiesNotReadAfterTheCallReturned: a call that sent a body returns only once the transport can no
// longer read the caller's source, even when the answer came before the body was sent (the transport
// then goes on sending it in its own goroutine): a Read of the source in progress when the answer came
// is waited for, and none starts after the call returned. The source's slow Read ends only when its
// body is closed (as a pipe's does) or after the call returned, and nothing but the loan's end closes
// the body while the transport is inside that Read. Without the guard's loan, UploadSmall returned
// with the source's slow Read still in progress. (S3 parts are not a row: the SDK closes its
// own wrapper of the body when Do returns, and that Close waits for the Read in progress too, so the
// test could not release the Read it blocks.)
func TestBodiesNotReadAfterTheCallReturned(t *testing.T) {
	// Larger than what Go's server drains of a body its handler left (256 KiB), so it answers at
	// once; smaller than the size from which UploadSmall asks "Expect: 100-continue", so the body goes
	// out with the headers.
	const size = 900 << 10
	const blockAt = 128 << 10
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	src := newSlowSource(ctx, testutil.RandomBytes(3, size), blockAt)
	var requests atomic.Int64
	srv := earlyServer(t, src, &requests)
	c, err := New(Options{BaseURL: srv.URL, APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var waited atomic.Bool // the body was closed during the slow Read: the loan ended while it was in progress
	c.hc.Transport = &closingTransport{next: c.hc.Transport, onClose: func() {
		waited.Store(src.inSlow.Load())
		close(src.release)
	}}
	f, err := c.UploadSmall(ctx, "a.bin", src, size, 0)
	close(src.returned)
	if ctx.Err() != nil {
		t.Fatalf("the watchdog ended the call: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if f.ID != "early" {
		t.Errorf("file %+v, want the early answer's", f)
	}
	if n := src.late.Load(); n != 0 {
		t.Errorf("%d reads of the source in progress when the call returned", n)
	}
	if !waited.Load() {
		t.Error("the loan did not end during the source's Read in progress")
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	// Once the server is gone (Close waits for its handlers and closes the connections), the
	// transport has no body to send any more: still no read after the return.
	srv.Close()
	if n := src.late.Load(); n != 0 {
		t.Errorf("%d reads of the source after the call returned", n)
	}
}
