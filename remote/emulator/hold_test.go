package emulator

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// leaving is a request whose client goes away while the emulator holds it unanswered.
type leaving struct {
	name   string
	method string
	size   int64  // declared Content-Length; -1: no body
	send   string // what the client sends of it before it leaves
}

const leavingBody = `{"name": "held", "jobanalyses": []}`

// leavingCases: a body sent whole, a body cut short, and none. net/http cancels a request's context
// on a departure only once the body has been read, so a wait that watches the context alone holds
// the first two until it ends by itself.
var leavingCases = []leaving{
	{name: "no body", method: http.MethodGet, size: -1},
	{name: "a body sent whole", method: http.MethodPost, size: int64(len(leavingBody)), send: leavingBody},
	{name: "a body cut short", method: http.MethodPost, size: 1000, send: leavingBody},
}

// leaveWhileHeld sends tc to /api/v2/jobs/, waits until held reports the request held, lets the
// client leave, and waits for the emulator to let go of the request (its handling returns). The
// request must not be answered.
func (h *harness) leaveWhileHeld(t *testing.T, tc leaving, held func() bool) {
	t.Helper()
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
	testutil.Eventually(t, 30*time.Second, "the request to be held", held)
	<-sent
	cancel()
	// The waits run for an hour or more: only one that ends with its client ends within the bound.
	testutil.Eventually(t, 30*time.Second, "the held request to end with its client", func() bool { return h.e.Serving() == 0 })
	if pw != nil {
		pw.CloseWithError(context.Canceled) // the transport still reads what it no longer sends
	}
	if err := <-done; err == nil {
		t.Fatal("the held request was answered")
	}
}

// TestHoldEndsWhenTheClientLeaves: a request held by a freeze or by a stall before the headers stops
// being held when its client goes away, with or without a body. Before, these waits watched the
// request's context only, which net/http does not cancel while a body remains unread: a client that
// sent a body (a POST, an upload part) and gave up stayed held until the thaw or the stall's end.
func TestHoldEndsWhenTheClientLeaves(t *testing.T) {
	holds := []struct {
		name  string
		start func(e *Emulator)
		end   func(e *Emulator) // lets a request still held go, so a failing test's cleanup ends
	}{
		{"frozen", func(e *Emulator) { e.SetFrozen(true) }, func(e *Emulator) { e.SetFrozen(false) }},
		{"stall before the headers", func(e *Emulator) {
			// Two minutes: only the end of a failing test's cleanup waits that long.
			e.SetFaults(Faults{StallFor: 2 * time.Minute})
			e.FailNext(EndpointJobCreate, 1, FaultStallHeaders)
			e.FailNext(EndpointJobs, 1, FaultStallHeaders)
		}, func(*Emulator) {}},
	}
	for _, hold := range holds {
		for _, tc := range leavingCases {
			t.Run(hold.name+"/"+tc.name, func(t *testing.T) {
				h := newHarness(t, Options{})
				hold.start(h.e)
				t.Cleanup(func() { hold.end(h.e) }) // before the harness's, which waits for every handler
				h.leaveWhileHeld(t, tc, func() bool { return h.e.Holding() == 1 })
				if n := h.e.Holding(); n != 0 {
					t.Fatalf("%d requests still held", n)
				}
			})
		}
	}
}

// TestClientGoneWhileHeldIsNotCountedAnswered: a request whose client left while the emulator held it
// (frozen, a stall before the headers, a latency) was never answered, and the counters say so: its
// status is StatusClientClosedRequest, not a 2xx, even once the hold ends (the thaw). It used to count
// as 200: the status net/http sends for a handler that writes nothing, recorded although nothing was
// sent, so Succeeded counted answers no client had.
func TestClientGoneWhileHeldIsNotCountedAnswered(t *testing.T) {
	holds := []struct {
		name  string
		start func(e *Emulator, endpoint string)
		held  func(e *Emulator) bool
		end   func(e *Emulator)
	}{
		{"frozen", func(e *Emulator, _ string) { e.SetFrozen(true) }, func(e *Emulator) bool { return e.Holding() == 1 },
			func(e *Emulator) { e.SetFrozen(false) }},
		{"stall before the headers", func(e *Emulator, endpoint string) {
			e.SetFaults(Faults{StallFor: 2 * time.Minute})
			e.FailNext(endpoint, 1, FaultStallHeaders)
		}, func(e *Emulator) bool { return e.Holding() == 1 }, func(e *Emulator) { e.SetFaults(Faults{}) }},
		{"latency", func(e *Emulator, _ string) { e.SetFaults(Faults{Latency: 2 * time.Minute}) },
			func(e *Emulator) bool { return e.Delaying() == 1 }, func(e *Emulator) { e.SetFaults(Faults{}) }},
	}
	for _, hold := range holds {
		for _, tc := range leavingCases {
			t.Run(hold.name+"/"+tc.name, func(t *testing.T) {
				endpoint := EndpointJobs
				if tc.method == http.MethodPost {
					endpoint = EndpointJobCreate
				}
				h := newHarness(t, Options{})
				hold.start(h.e, endpoint)
				t.Cleanup(func() { hold.end(h.e) }) // before the harness's, which waits for every handler
				h.leaveWhileHeld(t, tc, func() bool { return hold.held(h.e) })
				hold.end(h.e)
				c := h.e.Counters()
				if c.Requests[endpoint] != 1 || c.Succeeded(endpoint) != 0 || c.Statuses[endpoint][StatusClientClosedRequest] != 1 ||
					len(c.Statuses[endpoint]) != 1 {
					t.Fatalf("%s: %d requests, %d succeeded, statuses %v; want 1 request, none succeeded, status %d only",
						endpoint, c.Requests[endpoint], c.Succeeded(endpoint), c.Statuses[endpoint], StatusClientClosedRequest)
				}
				// Once the hold is over, a client that stays is answered and counted so.
				if resp, body := h.do(http.MethodGet, "/api/v2/jobs/", nil); resp.StatusCode != http.StatusOK {
					t.Fatalf("after the hold: %s %s", resp.Status, body)
				}
				if c := h.e.Counters(); c.Statuses[EndpointJobs][http.StatusOK] != 1 || c.Statuses[endpoint][StatusClientClosedRequest] != 1 {
					t.Fatalf("after the hold: statuses %v", c.Statuses)
				}
			})
		}
	}
}
