package emulator

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// TestLatencyEndsWhenTheClientLeaves: a request waiting out the latency stops waiting when its client
// goes away, with or without a body. net/http cancels the request's context on a departure only once
// the body has been read, so before the emulator read bodies ahead, a departed client's request with
// a body sat out the whole latency (and then reached its handler).
func TestLatencyEndsWhenTheClientLeaves(t *testing.T) {
	const body = `{"name": "held", "jobanalyses": []}`
	cases := []struct {
		name   string
		method string
		size   int64  // declared Content-Length; -1: no body
		send   string // what the client sends of it before it leaves
	}{
		{name: "no body", method: http.MethodGet, size: -1},
		{name: "a body sent whole", method: http.MethodPost, size: int64(len(body)), send: body},
		{name: "a body cut short", method: http.MethodPost, size: 1000, send: body},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			// An hour: only a wait that ends with the client can end within the test. The wait
			// must end before the harness's cleanup, which waits for every handler.
			h.e.SetFaults(Faults{Latency: time.Hour})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var req *http.Request
			var pw *io.PipeWriter
			sent := make(chan struct{}) // closed when the client has taken all it sends of the body
			if tc.size < 0 {
				close(sent)
				req, _ = http.NewRequestWithContext(ctx, tc.method, h.srv.URL+"/api/v2/jobs/", nil)
			} else {
				var pr *io.PipeReader
				pr, pw = io.Pipe()
				t.Cleanup(func() { pw.CloseWithError(context.Canceled) })
				go func() {
					_, _ = io.WriteString(pw, tc.send)
					if int64(len(tc.send)) == tc.size {
						pw.Close()
					}
					close(sent)
				}()
				req, _ = http.NewRequestWithContext(ctx, tc.method, h.srv.URL+"/api/v2/jobs/", pr)
				req.ContentLength = tc.size
			}
			req.Header.Set("Authorization", "Token "+h.e.APIKey())
			done := make(chan error, 1)
			go func() {
				resp, err := h.srv.Client().Do(req)
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			testutil.Eventually(t, 30*time.Second, "the request waiting out the latency", func() bool { return h.e.Delaying() == 1 })
			<-sent
			cancel()
			testutil.Eventually(t, 30*time.Second, "the latency wait to end with its client", func() bool { return h.e.Delaying() == 0 })
			if pw != nil {
				pw.CloseWithError(context.Canceled) // the transport still reads what it no longer sends
			}
			if err := <-done; err == nil {
				t.Fatal("the request was answered during an hour's latency")
			}
		})
	}
}

// TestLatencyWithABody: a request whose body is read ahead during the latency reaches its handler
// whole, whether the body fits in the read-ahead or runs past it.
func TestLatencyWithABody(t *testing.T) {
	h := newHarness(t, Options{})
	h.e.SetFaults(Faults{Latency: 5 * time.Millisecond})
	for _, n := range []int{10, readAheadLimit - 40, 3 * readAheadLimit} {
		h.e.ResetCounters()
		body := `{"name": "` + strings.Repeat("x", n) + `", "jobanalyses": []}`
		resp, b := h.do(http.MethodPost, "/api/v2/jobs/", strings.NewReader(body))
		// The name was read (no error about it), and so was what follows it.
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "jobanalyses") || strings.Contains(string(b), "name") {
			t.Fatalf("name of %d bytes: %d %s", n, resp.StatusCode, b)
		}
		if got := h.e.Counters().BytesIn[EndpointJobCreate]; got != int64(len(body)) {
			t.Fatalf("name of %d bytes: %d body bytes read, want %d", n, got, len(body))
		}
	}
}
