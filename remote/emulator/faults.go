package emulator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Fault is one kind of injected failure.
type Fault int

const (
	FaultNone  Fault = iota
	Fault500         // 500 Internal Server Error
	Fault503         // 503 Service Unavailable
	Fault504         // 504 Gateway Timeout (as GET .../statuses/ sometimes answers)
	Fault429         // 429 with Retry-After (S3: 503 SlowDown)
	FaultCut         // headers and part of the body sent, then the connection is closed
	FaultShort       // Content-Length promised, half the body sent, then the connection ends
	// FaultStall sends the headers and half the body, then nothing (the connection stays open) until
	// Faults.StallFor has passed or the client goes away: a stalled body.
	FaultStall
	// FaultStallHeaders sends nothing at all until Faults.StallFor has passed (then answers normally)
	// or the client goes away: a stall before the headers.
	FaultStallHeaders
)

func (f Fault) String() string {
	switch f {
	case Fault500:
		return "500"
	case Fault503:
		return "503"
	case Fault504:
		return "504"
	case Fault429:
		return "429"
	case FaultCut:
		return "cut"
	case FaultShort:
		return "short"
	case FaultStall:
		return "stall"
	case FaultStallHeaders:
		return "stall-headers"
	}
	return "none"
}

// Faults are the fault injection knobs. Rates are fractions of requests (0..1), drawn from an RNG seeded
// with Seed, so one request order gives the same faults every run. Latency and Bandwidth apply to every
// API and S3 request; the rates to the Endpoints listed (all when empty). The admin endpoints are exempt.
type Faults struct {
	Latency      time.Duration `json:"latency"`      // added before each response
	Bandwidth    int64         `json:"bandwidth"`    // bytes/s per connection, each direction; 0 = unlimited
	ErrorRate    float64       `json:"errorRate"`    // answered 500, 503 or 504 (in equal shares)
	ThrottleRate float64       `json:"throttleRate"` // answered 429 + Retry-After
	RetryAfter   time.Duration `json:"retryAfter"`   // Retry-After of injected 429s; 0 = 1s
	CutRate      float64       `json:"cutRate"`      // bodies cut mid-way by closing the connection
	ShortRate    float64       `json:"shortRate"`    // bodies shorter than their Content-Length
	StallRate    float64       `json:"stallRate"`    // bodies that stop half way and stay silent (FaultStall)
	// StallHeadersRate: requests answered with silence before the headers (FaultStallHeaders).
	StallHeadersRate float64 `json:"stallHeadersRate"`
	// StallFor is how long a stall lasts; 0 = until the client gives up.
	StallFor time.Duration `json:"stallFor"`
	// Frozen: the platform accepts connections and reads requests but answers nothing until unfrozen
	// (then the requests held are served) or the client gives up.
	Frozen    bool     `json:"frozen"`
	Seed      uint64   `json:"seed"`
	Endpoints []string `json:"endpoints,omitempty"`
}

// faultInjector decides, per request, which fault (if any) to inject.
type faultInjector struct {
	mu   sync.Mutex         // guards all fields
	f    Faults             // current knobs
	rng  *rand.Rand         // seeded from f.Seed on every set
	next map[string][]Fault // FailNext queues: endpoint ("" = any) -> faults still to inject
	thaw chan struct{}      // closed when a freeze ends; nil when nobody waits

	holding  atomic.Int64 // requests held now by a freeze or a stall (no lock)
	delaying atomic.Int64 // requests waiting out the latency now (no lock)
}

// Holding is the number of requests held now by a freeze or a stall: tests wait on it instead of
// sleeping.
func (e *Emulator) Holding() int64 { return e.faults.holding.Load() }

func (fi *faultInjector) set(f Faults) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.f = f
	fi.f.Endpoints = slices.Clone(f.Endpoints)
	fi.rng = rand.New(rand.NewPCG(f.Seed, 0x5eed))
	fi.thawLocked()
}

// SetFaults replaces the fault injection knobs (the FailNext queues are kept).
func (e *Emulator) SetFaults(f Faults) { e.faults.set(f) }

// Faults returns the current knobs.
func (e *Emulator) Faults() Faults {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	f := e.faults.f
	f.Endpoints = slices.Clone(f.Endpoints)
	return f
}

// FailNext makes the next n requests to endpoint (an Endpoint* name, or "" for any API or S3 request)
// fail with f, before any rate-based fault: the deterministic knob for tests.
func (e *Emulator) FailNext(endpoint string, n int, f Fault) {
	e.faults.mu.Lock()
	defer e.faults.mu.Unlock()
	if e.faults.next == nil {
		e.faults.next = map[string][]Fault{}
	}
	for range n {
		e.faults.next[endpoint] = append(e.faults.next[endpoint], f)
	}
}

func (fi *faultInjector) decide(endpoint string) (Faults, Fault) {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	for _, key := range []string{endpoint, ""} {
		if q := fi.next[key]; len(q) > 0 {
			fi.next[key] = q[1:]
			return fi.f, q[0]
		}
	}
	f := fi.f
	if fi.rng == nil || (len(f.Endpoints) > 0 && !slices.Contains(f.Endpoints, endpoint)) {
		return f, FaultNone
	}
	x := fi.rng.Float64()
	switch {
	case x < f.ErrorRate:
		return f, []Fault{Fault500, Fault503, Fault504}[fi.rng.IntN(3)]
	case x < f.ErrorRate+f.ThrottleRate:
		return f, Fault429
	case x < f.ErrorRate+f.ThrottleRate+f.CutRate:
		return f, FaultCut
	case x < f.ErrorRate+f.ThrottleRate+f.CutRate+f.ShortRate:
		return f, FaultShort
	case x < f.ErrorRate+f.ThrottleRate+f.CutRate+f.ShortRate+f.StallRate:
		return f, FaultStall
	case x < f.ErrorRate+f.ThrottleRate+f.CutRate+f.ShortRate+f.StallRate+f.StallHeadersRate:
		return f, FaultStallHeaders
	}
	return f, FaultNone
}

// injectFaults applies latency, bandwidth and the fault chosen for this request. It returns false when
// the request has been answered (or the client went away) and must not reach its handler.
func (e *Emulator) injectFaults(rw *respWriter, r *http.Request, rt route) bool {
	if !e.faults.waitThaw(r) {
		rw.clientGone = true
		return false
	}
	f, kind := e.faults.decide(rt.endpoint)
	if f.Latency > 0 && !e.faults.delay(r, f.Latency) {
		rw.clientGone = true
		return false
	}
	if f.Bandwidth > 0 {
		rw.rate, rw.ctx = f.Bandwidth, r.Context()
		r.Body = &pacedBody{ReadCloser: r.Body, rate: f.Bandwidth, start: time.Now(), ctx: r.Context()}
	}
	switch kind {
	case Fault500, Fault503, Fault504:
		e.counters.fault(kind)
		status := map[Fault]int{Fault500: 500, Fault503: 503, Fault504: 504}[kind]
		if rt.kind == kindS3 {
			writeS3Error(rw, status, map[int]string{500: "InternalError", 503: "ServiceUnavailable", 504: "RequestTimeout"}[status], "Injected fault.")
		} else {
			writeDetail(rw, status, fmt.Sprintf("Injected fault: %s.", http.StatusText(status)))
		}
		return false
	case Fault429:
		e.counters.fault(kind)
		wait := f.RetryAfter
		if wait <= 0 {
			wait = time.Second
		}
		secs := int((wait + time.Second - 1) / time.Second)
		rw.Header().Set("Retry-After", strconv.Itoa(secs))
		if rt.kind == kindS3 {
			writeS3Error(rw, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		} else {
			writeDetail(rw, http.StatusTooManyRequests, throttledDetail(secs))
		}
		return false
	case FaultCut, FaultShort:
		rw.arm(kind, func() { e.counters.fault(kind) })
	case FaultStall:
		rw.arm(kind, func() { e.counters.fault(kind) })
		rw.stall = func() bool { return e.faults.stall(r, f.StallFor) }
	case FaultStallHeaders:
		e.counters.fault(kind)
		if !e.faults.stall(r, f.StallFor) {
			rw.clientGone = true
			return false
		}
	}
	return true
}

// stall holds r for d (0: until its client leaves); it reports whether the stall ended by itself.
func (fi *faultInjector) stall(r *http.Request, d time.Duration) bool {
	fi.holding.Add(1)
	defer fi.holding.Add(-1)
	var wake <-chan time.Time // nil: never
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		wake = t.C
	}
	return holdUntil(r, wake)
}

// SetFrozen freezes the platform (every API and S3 request waits, unanswered) or thaws it (the
// waiting requests are served). The admin endpoints keep answering.
func (e *Emulator) SetFrozen(frozen bool) {
	fi := &e.faults
	fi.mu.Lock()
	defer fi.mu.Unlock()
	fi.f.Frozen = frozen
	fi.thawLocked()
}

// thawLocked wakes the requests waiting on a freeze when the platform is no longer frozen.
func (fi *faultInjector) thawLocked() {
	if !fi.f.Frozen && fi.thaw != nil {
		close(fi.thaw)
		fi.thaw = nil
	}
}

// waitThaw holds r while the platform is frozen; false when the client went away first.
func (fi *faultInjector) waitThaw(r *http.Request) bool {
	for {
		fi.mu.Lock()
		if !fi.f.Frozen {
			fi.mu.Unlock()
			return true
		}
		if fi.thaw == nil {
			fi.thaw = make(chan struct{})
		}
		ch := fi.thaw
		fi.mu.Unlock()
		fi.holding.Add(1)
		thawed := holdUntil(r, ch)
		fi.holding.Add(-1)
		if !thawed {
			return false
		}
	}
}

func writeS3Error(w http.ResponseWriter, status int, code, msg string) {
	body := fmt.Sprintf("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message></Error>", code, msg)
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// errCut is what a handler's Write returns once the connection has been cut on purpose.
var errCut = errors.New("emulator: connection cut by fault injection")

// respWriter wraps every response: it records the status and body bytes for the counters, paces the
// body to the bandwidth cap, and carries out cut and short-body faults.
// Each HTTP/1.1 connection carries one request at a time, so pacing each response paces its connection.
type respWriter struct {
	w           http.ResponseWriter
	status      int
	wroteHeader bool
	sent        int64 // body bytes passed on
	clientGone  bool  // a hold saw the client leave before any header: counted as StatusClientClosedRequest

	counters *counters // counts the status and the bytes as they go
	endpoint string

	rate  int64           // bytes/s; 0 = unpaced
	start time.Time       // of the paced body
	ctx   context.Context // the request's, set with rate: done when the client leaves

	fault   Fault  // FaultCut or FaultShort when armed
	onTrip  func() // counts the fault when it actually happens
	limit   int64  // body bytes let through before the fault trips; -1 = no body to cut
	tripped bool
	stall   func() bool // FaultStall: the silence after the half body; true when it ended by itself
}

func (rw *respWriter) arm(f Fault, onTrip func()) { rw.fault, rw.onTrip = f, onTrip }

func (rw *respWriter) Header() http.Header { return rw.w.Header() }

func (rw *respWriter) Unwrap() http.ResponseWriter { return rw.w }

func (rw *respWriter) WriteHeader(code int) {
	if rw.wroteHeader {
		return
	}
	rw.wroteHeader, rw.status = true, code
	rw.counters.status(rw.endpoint, code)
	if rw.fault != FaultNone {
		// Cut half way through the declared body; without a Content-Length, right after the headers.
		rw.limit = 0
		if cl, err := strconv.ParseInt(rw.w.Header().Get("Content-Length"), 10, 64); err == nil {
			rw.limit = cl / 2
			if cl == 0 {
				rw.limit = -1
			}
		} else if rw.fault == FaultShort {
			rw.fault = FaultCut // a short body needs a promised length
		}
		if code == http.StatusNoContent || code == http.StatusNotModified || code < 200 {
			rw.limit = -1
		}
	}
	rw.w.WriteHeader(code)
}

func (rw *respWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if rw.tripped {
		if rw.fault == FaultShort {
			return len(p), nil
		}
		if rw.fault == FaultStall {
			return rw.paced(p) // the stall is over: the rest of the body, late
		}
		return 0, errCut
	}
	if rw.fault != FaultNone && rw.limit >= 0 && rw.sent+int64(len(p)) > rw.limit {
		n, err := rw.paced(p[:rw.limit-rw.sent])
		if err != nil {
			return n, err
		}
		rw.trip()
		if rw.fault == FaultShort {
			return len(p), nil
		}
		if rw.fault == FaultStall {
			if !rw.stall() {
				return n, errCut // the client gave up
			}
			m, err := rw.paced(p[n:])
			return n + m, err
		}
		return n, errCut
	}
	return rw.paced(p)
}

// trip carries out the armed fault.
func (rw *respWriter) trip() {
	rw.tripped = true
	if rw.onTrip != nil {
		rw.onTrip()
	}
	if rw.fault == FaultStall {
		// What was written so far reaches the client; then silence.
		_ = http.NewResponseController(rw.w).Flush()
		return
	}
	if rw.fault != FaultCut {
		return // short: the rest is dropped; net/http closes the connection as the body came up short
	}
	rc := http.NewResponseController(rw.w)
	_ = rc.Flush()
	conn, buf, err := rc.Hijack()
	if err != nil {
		// Not HTTP/1 (or already hijacked): let net/http abort the stream.
		panic(http.ErrAbortHandler)
	}
	_ = buf.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // reset, like a dropped connection, rather than an orderly close
	}
	_ = conn.Close()
}

// write passes p on, counted before it goes: once the bytes are on the socket the client may have
// them (and its caller assert the counters) before Write returns here. A short write takes back
// what did not go.
func (rw *respWriter) write(p []byte) (int, error) {
	rw.counters.bytes(rw.endpoint, int64(len(p)), 0)
	n, err := rw.w.Write(p)
	rw.sent += int64(n)
	if n < len(p) {
		rw.counters.bytes(rw.endpoint, int64(n-len(p)), 0)
	}
	return n, err
}

// paced writes p no faster than the bandwidth cap. It stops as soon as the client is gone: a pause
// ends when the request's context does (net/http cancels it when the client closes the connection),
// and the flush before a pause reports a dead connection that a write into net/http's buffers would
// not. Otherwise a departed client's handler slept on between quanta written into nothing, and
// counted them out.
func (rw *respWriter) paced(p []byte) (int, error) {
	if rw.rate <= 0 {
		return rw.write(p)
	}
	if rw.start.IsZero() {
		rw.start = time.Now()
	}
	quantum := int(max(4096, min(rw.rate/50, 256<<10)))
	written := 0
	for len(p) > 0 {
		if err := rw.ctx.Err(); err != nil {
			return written, err
		}
		c := min(len(p), quantum)
		n, err := rw.write(p[:c])
		written += n
		if err != nil {
			return written, err
		}
		p = p[c:]
		due := rw.start.Add(time.Duration(float64(rw.sent) / float64(rw.rate) * float64(time.Second)))
		if d := time.Until(due); d > 0 {
			if err := http.NewResponseController(rw.w).Flush(); err != nil {
				return written, err
			}
			if !sleepCtx(rw.ctx, d) {
				return written, rw.ctx.Err()
			}
		}
	}
	return written, nil
}

func (rw *respWriter) Flush() {
	if rw.tripped {
		return
	}
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
	}
}

// pacedBody reads a request body no faster than the bandwidth cap.
type pacedBody struct {
	io.ReadCloser
	rate  int64
	start time.Time
	n     int64
	ctx   context.Context
}

func (b *pacedBody) Read(p []byte) (int, error) {
	p = p[:min(len(p), int(max(4096, min(b.rate/50, 256<<10))))]
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	due := b.start.Add(time.Duration(float64(b.n) / float64(b.rate) * float64(time.Second)))
	if d := time.Until(due); d > 0 && !sleepCtx(b.ctx, d) {
		return n, b.ctx.Err()
	}
	return n, err
}
