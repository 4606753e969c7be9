package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// The network policy: one set of rules for every request rescalefs sends, API calls, direct storage
// reads and upload parts alike (they all go through NewHTTPClient's transport and, for API calls,
// Client.do).
//
//   - A body that sends no byte for IdleTimeout is a stalled body: the request is cancelled and the
//     error (ErrStalled) is retryable, like a cut connection.
//   - An answer whose headers take longer than HeaderTimeout after the request was sent fails the same
//     way (a frozen platform accepts connections and answers nothing). The transport's own
//     ResponseHeaderTimeout, at twice that, is only a backstop.
//   - A call (an API request with its retries, or one ranged read with its fall-backs) that makes no
//     progress for Budget fails with ErrUnavailable, and so does one that has not finished Budget
//     after its first failed attempt (a platform that trickles half a body and stalls, again and
//     again, makes progress forever). Progress is an answer from the platform (any status) or a byte of
//     a body; waits the platform asked for (429 Retry-After, the request-rate throttle) do not count. So a read fails with EIO about Budget after the platform went
//     away, and a blip shorter than Budget is retried through and never seen.
//   - After a read failed with ErrUnavailable, reads of the same file fail at once for FailureMemory:
//     the kernel retries a failed read itself (a read-ahead failure becomes a synchronous single-page
//     read), and without this memory each retry would wait out the budget again.
//   - A redirect from https to http is refused: Go keeps the Authorization header when only the scheme
//     changes, and the key would go out in clear.
//   - 4xx answers other than 408 and 429 are never retried (Permanent): asking again cannot change them.
//
// The numbers, and why. rclone's mount uses --timeout 5m (an idle-IO timeout) and --contimeout 1m with
// 10 low-level retries, so a dead server holds a read for many minutes. mountpoint-s3 raised its S3
// client to 10 attempts "which takes about a minute on average", citing NFS's defaults (3 attempts,
// 60 s). We take the same minute, but as a bound rather than an average: Budget 60 s of no progress.
// Object stores close idle connections after about 20 s, so a body silent for 20 s is not coming
// back: IdleTimeout 20 s. HeaderTimeout 30 s leaves a slow listing page (the platform answers a
// 1000-file page in well under a second) ample room and fits two attempts inside the budget.

// Policy holds the network policy's numbers. The zero value of a field takes its default.
type Policy struct {
	DialTimeout   time.Duration // connecting, TLS handshake included; default 10 s
	HeaderTimeout time.Duration // from the request sent to the answer's headers; default 30 s
	IdleTimeout   time.Duration // no byte of a body (either way) for this long; default 20 s
	Budget        time.Duration // a call without progress for this long fails; default 60 s
	FailureMemory time.Duration // reads of a file that just failed fail at once; default 10 s
}

// Default policy numbers (see the comment above for why).
const (
	DefaultDialTimeout   = 10 * time.Second
	DefaultHeaderTimeout = 30 * time.Second
	DefaultIdleTimeout   = 20 * time.Second
	DefaultBudget        = 60 * time.Second
	DefaultFailureMemory = 10 * time.Second
)

// DefaultPolicy is the policy of a zero Policy.
var DefaultPolicy = Policy{}.withDefaults()

func (p Policy) withDefaults() Policy {
	if p.DialTimeout <= 0 {
		p.DialTimeout = DefaultDialTimeout
	}
	if p.HeaderTimeout <= 0 {
		p.HeaderTimeout = DefaultHeaderTimeout
	}
	if p.IdleTimeout <= 0 {
		p.IdleTimeout = DefaultIdleTimeout
	}
	if p.Budget <= 0 {
		p.Budget = DefaultBudget
	}
	if p.FailureMemory <= 0 {
		p.FailureMemory = DefaultFailureMemory
	}
	return p
}

// Errors of the policy.
var (
	// ErrStalled: a body (or the wait for headers) went silent for longer than the idle timeout.
	ErrStalled = errors.New("the platform stopped sending")
	// ErrUnavailable: a call made no progress within the budget; the platform is down or unreachable.
	ErrUnavailable = errors.New("the platform is not answering")
	// ErrInsecureRedirect: an https request was redirected to plain http.
	ErrInsecureRedirect = errors.New("refused a redirect from https to http")
)

// Permanent reports errors that asking again cannot change: 4xx answers (but 408 and 429), a refused
// redirect, and a budget already spent (ErrUnavailable: the caller's retries would wait it out again).
func Permanent(err error) bool {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInsecureRedirect) {
		return true
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status >= 400 && ae.Status <= 499 && ae.Status != http.StatusRequestTimeout && ae.Status != http.StatusTooManyRequests
	}
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrForbidden) ||
		errors.Is(err, ErrBadRequest) || errors.Is(err, ErrRange)
}

// NewHTTPClient is the default HTTP client, under DefaultPolicy.
func NewHTTPClient() *http.Client { return NewPolicyHTTPClient(Policy{}) }

// NewPolicyHTTPClient is an HTTP client under p: enough idle connections per host for 16 and more
// parallel range reads, bounded connect and header waits, an idle timeout on bodies in both
// directions, no whole-request timeout (it would cut a long body that is still flowing), and no
// redirect from https to http.
func NewPolicyHTTPClient(p Policy) *http.Client {
	p = p.withDefaults()
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   p.DialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		// HTTP/1.1 on purpose: parallel ranges then go over parallel TCP connections, each with its own
		// window, which is what beats one stream over a long fat pipe; HTTP/2 would multiplex them
		// over one connection.
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          128,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   p.DialTimeout,
		ResponseHeaderTimeout: 2 * p.HeaderTimeout, // a backstop: policyTransport's header timer ends the wait
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: &policyTransport{base: t, header: p.HeaderTimeout, idle: p.IdleTimeout,
			afterFunc: realAfterFunc},
		CheckRedirect: checkRedirect,
	}
}

// checkRedirect refuses a downgrade to plain http (Go would keep Authorization on it: only a change
// of host drops it) and long chains, which are not the API.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("%w (to %s)", ErrInsecureRedirect, req.URL.Host)
	}
	return nil
}

// policyTransport puts a timer on the wait for each answer's headers and an idle timer on both bodies,
// and reports progress to the call's budget (found in the request's context).
type policyTransport struct {
	base      *http.Transport
	header    time.Duration // from the request written to the answer's headers
	idle      time.Duration
	afterFunc afterFunc // makes the header and idle timers: realAfterFunc, or a test's hand-moved clock
}

// afterFunc starts a timer that calls f once d has passed, as time.AfterFunc does. The header and
// idle timers are made with one so that a test moves their clock by hand instead of waiting out a
// real timeout.
type afterFunc func(d time.Duration, f func()) policyTimer

// policyTimer is the part of *time.Timer the header and idle timers use.
type policyTimer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

func realAfterFunc(d time.Duration, f func()) policyTimer { return time.AfterFunc(d, f) }

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool.
func (t *policyTransport) CloseIdleConnections() { t.base.CloseIdleConnections() }

func (t *policyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pc := policyFrom(req.Context())
	ctx, cancel := context.WithCancelCause(req.Context())
	r2 := req.WithContext(ctx)
	var sent *idleTimer
	if req.Body != nil && req.Body != http.NoBody && req.ContentLength > 0 {
		// The request body: the transport reads it as it sends; a Read not asked for within idle
		// means the socket stopped draining (the peer stopped reading).
		sent = newIdleTimer(t.idle, cancel, t.afterFunc)
		r2.Body = &sendBody{rc: req.Body, t: sent, pc: pc}
		sent.arm()
	}
	headers := &headerTimer{}
	if t.header > 0 {
		r2 = r2.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(w httptrace.WroteRequestInfo) {
				if w.Err == nil {
					headers.start(t.afterFunc, t.header, cancel)
				}
			},
		}))
	}
	resp, err := t.base.RoundTrip(r2)
	headers.stop()
	if sent != nil {
		sent.stop()
	}
	if err != nil {
		cancel(nil)
		pc.fail()
		switch {
		case headers.fired.Load() && !errors.Is(err, ErrStalled):
			return nil, fmt.Errorf("%w: %w", context.Cause(ctx), err)
		case headers.fired.Load():
			return nil, err // the cause itself
		case errors.Is(context.Cause(ctx), ErrStalled):
			return nil, fmt.Errorf("%w: sending the request body: %w", ErrStalled, err)
		}
		return nil, err
	}
	pc.progress()
	if resp.StatusCode >= 500 {
		pc.fail()
	}
	if resp.Body == http.NoBody {
		cancel(nil)
		return resp, nil
	}
	resp.Body = &idleBody{rc: resp.Body, t: newIdleTimer(t.idle, cancel, t.afterFunc), ctx: ctx, cancel: cancel, pc: pc}
	return resp, nil
}

// headerTimer cancels a request whose answer's headers have not come within the header timeout of
// the request being written, as the transport's ResponseHeaderTimeout would (it starts at the same
// point), but on the policy's clock.
type headerTimer struct {
	mu      sync.Mutex  // guards timer and stopped
	timer   policyTimer // nil until the request is written
	stopped bool        // RoundTrip has returned: a request written later (an early answer) is not timed
	fired   atomic.Bool
}

func (h *headerTimer) start(after afterFunc, d time.Duration, cancel context.CancelCauseFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return
	}
	if after == nil {
		after = realAfterFunc
	}
	h.timer = after(d, func() {
		h.fired.Store(true)
		cancel(fmt.Errorf("%w: no answer for %v after the request", ErrStalled, d))
	})
}

func (h *headerTimer) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
	if h.timer != nil {
		h.timer.Stop()
	}
}

// idleTimer cancels a request when armed for longer than its timeout.
type idleTimer struct {
	d     time.Duration
	timer policyTimer
	fired atomic.Bool
}

// newIdleTimer makes a stopped idle timer with after (nil: real time).
func newIdleTimer(d time.Duration, cancel context.CancelCauseFunc, after afterFunc) *idleTimer {
	if after == nil {
		after = realAfterFunc
	}
	it := &idleTimer{d: d}
	it.timer = after(time.Hour, func() {
		it.fired.Store(true)
		cancel(fmt.Errorf("%w: no byte for %v", ErrStalled, d))
	})
	it.timer.Stop()
	return it
}

func (it *idleTimer) arm()  { it.timer.Reset(it.d) }
func (it *idleTimer) stop() { it.timer.Stop() }

// sendBody is a request body under the idle timer: between two reads of the transport, the timer runs.
type sendBody struct {
	rc io.ReadCloser
	t  *idleTimer
	pc *policyCall
}

func (b *sendBody) Read(p []byte) (int, error) {
	b.t.stop()
	n, err := b.rc.Read(p)
	if n > 0 {
		b.pc.progress()
	}
	if err == nil {
		b.t.arm()
	}
	return n, err
}

func (b *sendBody) Close() error { b.t.stop(); return b.rc.Close() }

// idleBody is a response body under the idle timer: while a Read waits, the timer runs. A caller that
// is slow to read is not a stall; only a Read that gets nothing for the timeout is.
type idleBody struct {
	rc     io.ReadCloser
	t      *idleTimer
	ctx    context.Context
	cancel context.CancelCauseFunc
	pc     *policyCall
}

func (b *idleBody) Read(p []byte) (int, error) {
	b.t.arm()
	n, err := b.rc.Read(p)
	b.t.stop()
	if n > 0 {
		b.pc.progress()
	}
	if err != nil && err != io.EOF {
		b.pc.fail()
		if b.t.fired.Load() && !errors.Is(err, ErrStalled) {
			err = fmt.Errorf("%w: %w", context.Cause(b.ctx), err)
		}
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.t.stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// policyCall is one call's budget: it cancels the call's context once the call has made no progress
// for the budget, except while the call waits on purpose (held). A nil *policyCall does nothing.
type policyCall struct {
	d      time.Duration
	cancel context.CancelCauseFunc
	health *Health
	last   atomic.Int64 // time.Now().UnixNano() of the last progress
	failAt atomic.Int64 // time.Now().UnixNano() of the first failed attempt; 0 = none yet
	held   atomic.Int32 // waits in progress that the platform asked for
	fired  atomic.Bool
	timer  *time.Timer
}

type policyKey struct{}

func policyFrom(ctx context.Context) *policyCall {
	pc, _ := ctx.Value(policyKey{}).(*policyCall)
	return pc
}

func (pc *policyCall) progress() {
	if pc == nil {
		return
	}
	pc.last.Store(time.Now().UnixNano())
	pc.health.answered()
}

// hold stops the budget's clock for a wait the platform asked for; the returned func restarts it.
func (pc *policyCall) hold() func() {
	if pc == nil {
		return func() {}
	}
	pc.held.Add(1)
	start := time.Now()
	return func() {
		// The held time is moved out of the clock: the budget resumes where it stopped.
		held := int64(time.Since(start))
		pc.last.Add(held)
		if f := pc.failAt.Load(); f != 0 {
			pc.failAt.CompareAndSwap(f, f+held)
		}
		pc.held.Add(-1)
	}
}

func (pc *policyCall) check() {
	if pc.held.Load() > 0 {
		pc.timer.Reset(pc.d)
		return
	}
	now := time.Now().UnixNano()
	left := pc.d - time.Duration(now-pc.last.Load())
	if f := pc.failAt.Load(); f != 0 {
		left = min(left, pc.d-time.Duration(now-f))
	}
	if left > 0 {
		pc.timer.Reset(left)
		return
	}
	pc.fired.Store(true)
	pc.cancel(ErrUnavailable)
}

// fail records a failed attempt (no answer, a 5xx, a body cut or stalled). From the first one on, the
// call has the budget to finish, progress or not: a platform that trickles half a body and stalls,
// again and again, makes progress forever without ever answering.
func (pc *policyCall) fail() {
	if pc != nil {
		pc.failAt.CompareAndSwap(0, time.Now().UnixNano())
	}
}

// withBudget runs fn under a budget: ctx's if it has one, else a new one of c's policy. An error of
// a call whose budget ran out is ErrUnavailable (never context.Canceled, which would read as an
// interrupted caller) with the last failure for context.
func (c *Client) withBudget(ctx context.Context, what string, fn func(context.Context) error) error {
	if policyFrom(ctx) != nil || ctx.Err() != nil {
		return fn(ctx)
	}
	cctx, cancel := context.WithCancelCause(ctx)
	pc := &policyCall{d: c.policy.Budget, cancel: cancel, health: c.health}
	pc.last.Store(time.Now().UnixNano())
	pc.timer = time.AfterFunc(pc.d, pc.check)
	c.health.begin()
	err := fn(context.WithValue(cctx, policyKey{}, pc))
	pc.timer.Stop()
	cancel(nil)
	c.health.end()
	if err != nil && pc.fired.Load() && ctx.Err() == nil {
		c.health.unavailable()
		return fmt.Errorf("%s: %w: no answer for %v (%v)", what, ErrUnavailable, pc.d, err)
	}
	return err
}

// Health is what the client knows of the platform's state, for status files and logs.
type Health struct {
	lastAnswer atomic.Int64 // UnixNano of the last answer (any status) or body byte
	calls      atomic.Int64 // calls in progress
	retrying   atomic.Int64 // calls in progress that are retrying after a failure
	throttled  atomic.Int64 // calls in progress waiting out a 429 (its Retry-After, else a backoff)
	gaveUp     atomic.Int64 // calls that ran out of budget (failed with ErrUnavailable) since start
	// throttledUntil is when the latest of those waits ends (UnixNano).
	throttledUntil atomic.Int64

	mu       sync.Mutex // guards down and retryErr
	down     bool       // a call ran out of budget and nothing has answered since
	retryErr string     // what the latest call to start retrying failed with
	onChange func(down bool)
}

// HealthSnapshot is Health at one moment.
type HealthSnapshot struct {
	LastAnswer time.Time `json:"lastAnswer"` // zero: never
	Calls      int64     `json:"calls"`      // platform calls in progress
	Retrying   int64     `json:"retrying"`   // of those, waiting to retry after a failure
	Down       bool      `json:"down"`       // a call gave up (no answer within the budget) and nothing answered since
	// RetryError is what the latest call to start retrying failed with; "" when none is retrying.
	RetryError string `json:"retryError,omitempty"`
	// Throttled calls wait out a 429 (the platform's Retry-After) until ThrottledUntil, the latest end.
	Throttled      int64     `json:"throttled"`
	ThrottledUntil time.Time `json:"throttledUntil,omitzero"`
	// GaveUp counts the calls that ran out of budget since the client was made: each is one wait of
	// the policy's bound that ended in ErrUnavailable (EIO for a read).
	GaveUp int64 `json:"gaveUp"`
}

func (h *Health) begin() {
	if h != nil {
		h.calls.Add(1)
	}
}
func (h *Health) end() {
	if h != nil {
		h.calls.Add(-1)
	}
}

func (h *Health) answered() {
	if h == nil {
		return
	}
	h.lastAnswer.Store(time.Now().UnixNano())
	h.setDown(false)
}

func (h *Health) unavailable() {
	if h != nil {
		h.gaveUp.Add(1)
		h.setDown(true)
	}
}

// setDown records a change of state and tells onChange once per change, so the log says "the
// platform is not answering" once, not once per block.
func (h *Health) setDown(down bool) {
	h.mu.Lock()
	changed := h.down != down
	h.down = down
	f := h.onChange
	h.mu.Unlock()
	if changed && f != nil {
		f(down)
	}
}

// retry counts a call waiting to retry after err until the returned func is called.
func (h *Health) retry(err error) (resume func()) {
	h.mu.Lock()
	h.retryErr = err.Error()
	h.mu.Unlock()
	h.retrying.Add(1)
	return func() { h.retrying.Add(-1) }
}

// throttle counts a call waiting out a 429 until the returned func is called.
func (h *Health) throttle(until time.Time) (resume func()) {
	for {
		old := h.throttledUntil.Load()
		if h.throttled.Load() > 0 && old >= until.UnixNano() || h.throttledUntil.CompareAndSwap(old, until.UnixNano()) {
			break
		}
	}
	h.throttled.Add(1)
	return func() { h.throttled.Add(-1) }
}

// Snapshot returns the current state.
func (h *Health) Snapshot() HealthSnapshot {
	var s HealthSnapshot
	if n := h.lastAnswer.Load(); n != 0 {
		s.LastAnswer = time.Unix(0, n)
	}
	s.Calls, s.Retrying, s.Throttled = h.calls.Load(), h.retrying.Load(), h.throttled.Load()
	s.GaveUp = h.gaveUp.Load()
	if s.Throttled > 0 {
		s.ThrottledUntil = time.Unix(0, h.throttledUntil.Load())
	}
	h.mu.Lock()
	s.Down = h.down
	if s.Retrying > 0 {
		s.RetryError = h.retryErr
	}
	h.mu.Unlock()
	return s
}

// Health is the client's view of the platform.
func (c *Client) Health() HealthSnapshot { return c.health.Snapshot() }

// recentFailures remembers files whose read just ran out of budget (see FailureMemory).
type recentFailures struct {
	mu    sync.Mutex // guards until
	until map[string]failure
}

type failure struct {
	at  time.Time
	err error
}

const maxRecentFailures = 4096

func (r *recentFailures) get(id string, memory time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.until[id]
	if !ok {
		return nil
	}
	if time.Since(f.at) >= memory {
		delete(r.until, id)
		return nil
	}
	return f.err
}

func (r *recentFailures) put(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until == nil || len(r.until) >= maxRecentFailures {
		r.until = map[string]failure{}
	}
	r.until[id] = failure{at: time.Now(), err: err}
}

// readBudget runs a ranged read of file id under the policy: a budget for the whole read (its retries
// and fall-backs), and the memory of a recent failure of the same file.
func (c *Client) readBudget(ctx context.Context, id string, fn func(context.Context) error) error {
	if policyFrom(ctx) != nil {
		return fn(ctx)
	}
	if err := c.failures.get(id, c.policy.FailureMemory); err != nil {
		return err
	}
	err := c.withBudget(ctx, "read "+id, fn)
	if errors.Is(err, ErrUnavailable) {
		c.failures.put(id, err)
	}
	return err
}
