package emulator

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLatencyEndsWhenTheClientLeaves: a request waiting out the latency stops waiting when its client
// goes away, with or without a body. net/http cancels the request's context on a departure only once
// the body has been read, so before the emulator read bodies ahead, a departed client's request with
// a body sat out the whole latency (and then reached its handler).
func TestLatencyEndsWhenTheClientLeaves(t *testing.T) {
	for _, tc := range leavingCases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			// An hour: only a wait that ends with the client can end within the test. The wait
			// must end before the harness's cleanup, which waits for every handler.
			h.e.SetFaults(Faults{Latency: time.Hour})
			h.leaveWhileHeld(t, tc, func() bool { return h.e.Delaying() == 1 })
			if n := h.e.Delaying(); n != 0 {
				t.Fatalf("%d requests still waiting out the latency", n)
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
