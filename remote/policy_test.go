package remote

// The network policy against the emulator's silent faults (stalled bodies, stalls before the headers, a
// frozen platform) over real HTTP, with the policy's numbers scaled down (testPolicy) so a test takes
// seconds.
//
// Clocks: TestPolicySilentFaultsRetried runs the policy's header and idle timers on a clock it moves by
// hand (policyTransport.afterFunc), once the emulator holds the silent request; its real-time numbers
// (the default header timeout and budget) only stop a read those timers failed to cut. The other tests
// run on the real clock, because what they exercise is the budget, whose timer is real time.
//
// What they assert is the policy's account of what happened (which error, how many calls ran out of
// budget, which requests reached the emulator), never how long it took, beyond "not before the budget"
// (load only makes things later). Bounds on real time only stop a hung test: watchdog fails a call
// still running ten times the budget and a header wait later, TestPolicySilentFaultsRetried's read
// must end within two default budgets, and the waits for the emulator's or the client's state are
// testutil.Eventually conditions.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// testPolicy is the policy scaled down about 40 times.
var testPolicy = Policy{DialTimeout: time.Second, HeaderTimeout: 500 * time.Millisecond, IdleTimeout: 300 * time.Millisecond,
	Budget: 1500 * time.Millisecond, FailureMemory: 2 * time.Second}

func newPolicyEnv(t *testing.T) (*env, File) {
	t.Helper()
	return newPolicyEnvWith(t, nil)
}

// newPolicyEnvWith is newPolicyEnv with tweak applied to the client's options last.
func newPolicyEnvWith(t *testing.T, tweak func(*Options)) (*env, File) {
	t.Helper()
	v := newEnv(t, emulator.Options{}, func(o *Options) {
		o.Sleep, o.Now = nil, nil // real time: the policy's timers are real
		o.MinBackoff, o.MaxBackoff = 10*time.Millisecond, 100*time.Millisecond
		o.Policy = testPolicy
		if tweak != nil {
			tweak(o)
		}
	})
	j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "big.bin", Size: 1 << 20}}})
	files, err := v.c.JobFiles(context.Background(), j.ID, "big.bin")
	if err != nil {
		t.Fatal(err)
	}
	return v, files[0]
}

// handTimers are the policy's idle timers on a testutil.Clock: they fire when the test moves the clock
// past their deadline, never by themselves.
type handTimers struct {
	clk    *testutil.Clock
	mu     sync.Mutex // guards timers, and each timer's at and active
	timers []*handTimer
}

type handTimer struct {
	h      *handTimers
	f      func()
	at     time.Time // the deadline, when active
	active bool
}

func (h *handTimers) afterFunc(d time.Duration, f func()) policyTimer {
	t := &handTimer{h: h, f: f}
	h.mu.Lock()
	h.timers = append(h.timers, t)
	h.mu.Unlock()
	t.Reset(d)
	return t
}

func (t *handTimer) Reset(d time.Duration) bool {
	at := t.h.clk.Now().Add(d)
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	was := t.active
	t.at, t.active = at, true
	return was
}

func (t *handTimer) Stop() bool {
	t.h.mu.Lock()
	defer t.h.mu.Unlock()
	was := t.active
	t.active = false
	return was
}

// advance moves the clock on by d and fires the timers then due; it returns how many fired.
func (h *handTimers) advance(d time.Duration) int {
	h.clk.Advance(d)
	now := h.clk.Now()
	h.mu.Lock()
	var due []*handTimer
	for _, t := range h.timers {
		if t.active && !t.at.After(now) {
			t.active = false
			due = append(due, t)
		}
	}
	h.mu.Unlock()
	for _, t := range due {
		t.f()
	}
	return len(due)
}

// contentsTransport counts the bytes the client has read of the file contents answers' bodies.
type contentsTransport struct {
	base http.RoundTripper
	read atomic.Int64
}

func (t *contentsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil && strings.HasSuffix(req.URL.Path, "/contents/") {
		resp.Body = &countedBody{ReadCloser: resp.Body, n: &t.read}
	}
	return resp, err
}

type countedBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// A body that stops half way and stays silent, and an answer that never starts, are each retried after
// the idle (or header) timeout, and the read returns the right bytes. The policy's idle and header
// timers run on a clock the test moves by hand: for a stalled body once the client has read all it
// gave, for stalled headers once the emulator holds the request. The real-time numbers (the default
// header timeout, its backstop twice that in net/http, and the default budget of a minute) are far
// beyond anything the test waits for: they only stop a read the hand-moved timers failed to cut, so
// load cannot make the test fail.
func TestPolicySilentFaultsRetried(t *testing.T) {
	for _, fault := range []emulator.Fault{emulator.FaultStall, emulator.FaultStallHeaders} {
		t.Run(fault.String(), func(t *testing.T) {
			timers := &handTimers{clk: testutil.NewClock(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))}
			var counted *contentsTransport
			v, f := newPolicyEnvWith(t, func(o *Options) {
				o.Policy.Budget = DefaultBudget
				o.Policy.HeaderTimeout = DefaultHeaderTimeout
				hc := NewPolicyHTTPClient(o.Policy)
				hc.Transport.(*policyTransport).afterFunc = timers.afterFunc
				counted = &contentsTransport{base: hc.Transport}
				hc.Transport = counted
				o.HTTPClient = hc
			})
			plain := v.plaintext(f.ID)
			v.e.ResetCounters()
			v.e.FailNext(emulator.EndpointContents, 1, fault)
			p := make([]byte, 600000)
			done := make(chan error, 1)
			go func() { done <- v.c.ReadRange(context.Background(), f.ID, 1000, p) }()
			if fault == emulator.FaultStall {
				// The stall: the emulator holds the answer and the client has read every byte it
				// sent. From here only the idle timer ends the silence; it fires when the clock has
				// moved the idle timeout past the client's last Read (which may still be starting).
				testutil.Eventually(t, 20*time.Second, "the client to read all of the stalled body", func() bool {
					return v.e.Holding() == 1 && counted.read.Load() == v.e.Counters().BytesOut[emulator.EndpointContents]
				})
				testutil.Eventually(t, 20*time.Second, "the stalled body's idle timer to fire", func() bool {
					return timers.advance(testPolicy.IdleTimeout) > 0
				})
			} else {
				// The request is held before the headers: only the header timer ends the silence. It
				// fires when the clock has moved the header timeout past the request written (which
				// the client may be about to report).
				testutil.Eventually(t, 20*time.Second, "the emulator to hold the request", func() bool { return v.e.Holding() == 1 })
				testutil.Eventually(t, 20*time.Second, "the header timer to fire", func() bool {
					return timers.advance(DefaultHeaderTimeout) > 0
				})
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(2 * DefaultBudget):
				t.Fatal("the read did not end within two budgets")
			}
			// No error is the proof that the silence was cut by the idle (or header) timeout: had the
			// silent attempt not been given up on, the budget would have run out on it (the stall
			// lasts until the client goes away) and the read failed with ErrUnavailable.
			if err != nil {
				t.Fatalf("read after a %s: %v", fault, err)
			}
			if n := v.c.Health().GaveUp; n != 0 {
				t.Errorf("%d calls ran out of budget, want none", n)
			}
			if !bytes.Equal(p, plain[1000:601000]) {
				t.Fatal("wrong bytes")
			}
			if n := v.requests(emulator.EndpointContents); n != 2 {
				t.Errorf("%d requests, want 2 (the stalled one and its retry)", n)
			}
			if n := v.e.Counters().Faults[fault.String()]; n != 1 {
				t.Errorf("%d %s faults injected, want 1", n, fault)
			}
			// The stalled handler must end once the client gave up on it.
			testutil.Eventually(t, 20*time.Second, "the emulator to let the stalled request go", func() bool {
				return v.e.Holding() == 0
			})
		})
	}
}

// A frozen platform fails a read with ErrUnavailable (not an interrupted caller) within the budget plus
// one header wait; the kernel's immediate retry of the same read fails at once without a request; once
// the platform thaws and the memory of the failure has passed, the read works again.
func TestPolicyFrozenPlatform(t *testing.T) {
	v, f := newPolicyEnv(t)
	ctx := context.Background()
	p := make([]byte, 4096)
	v.e.SetFrozen(true)
	start := time.Now()
	err := watchdog(t, func() error { return v.c.ReadRange(ctx, f.ID, 0, p) })
	el := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) {
		t.Fatalf("frozen platform: %v, want ErrUnavailable and not context.Canceled", err)
	}
	if el < testPolicy.Budget {
		t.Errorf("failed after %v, before the budget %v", el, testPolicy.Budget)
	}
	if h := v.c.Health(); !h.Down || h.GaveUp != 1 {
		t.Errorf("health after the budget ran out: %+v, want Down and one call given up", h)
	}
	if !Permanent(err) {
		t.Errorf("ErrUnavailable is not Permanent: a cache would retry it and double the wait")
	}
	remembered := v.c.failures.get(f.ID, testPolicy.FailureMemory)
	if remembered == nil {
		t.Fatal("the failure is not remembered")
	}

	// The kernel's retry of the same read: the remembered failure itself, without a request and
	// without a second budget. (The emulator counts a request on arrival: the abandoned attempts of
	// the first read are all counted by now.)
	before := v.e.Counters().Requests[emulator.EndpointContents]
	err2 := v.c.ReadRange(ctx, f.ID, 0, p)
	if !errors.Is(err2, remembered) {
		t.Fatalf("retry of the failed read: %v, want the remembered failure %v", err2, remembered)
	}
	if n := v.c.Health().GaveUp; n != 1 {
		t.Errorf("%d calls ran out of budget after the retry, want 1: the kernel's retry would double the wait", n)
	}
	if n := v.e.Counters().Requests[emulator.EndpointContents]; n != before {
		t.Errorf("the retry of a failed read sent %d requests", n-before)
	}

	thawed := time.Now()
	v.e.SetFrozen(false)
	var lastErr error
	defer func() {
		if t.Failed() {
			t.Logf("the last read's error: %v", lastErr)
		}
	}()
	testutil.Eventually(t, testPolicy.FailureMemory+5*time.Second, "reads to succeed once the platform is back", func() bool {
		lastErr = v.c.ReadRange(ctx, f.ID, 0, p)
		return lastErr == nil
	})
	if h := v.c.Health(); h.Down || !h.LastAnswer.After(thawed) {
		t.Errorf("health after the platform came back: %+v", h)
	}
}

// watchdog runs a call the policy must end and returns its error; it fails the test if the call is
// still running ten times the policy's bound (budget and one header wait) later: a budget that never
// ends the call, not a slow machine.
func watchdog(t *testing.T, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	limit := 10 * (testPolicy.Budget + testPolicy.HeaderTimeout)
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		t.Fatalf("the call was still running after %v: the budget did not end it", limit)
		return nil
	}
}

// A freeze shorter than the budget is invisible: the read waits it out and succeeds.
func TestPolicyBlipInvisible(t *testing.T) {
	v, f := newPolicyEnv(t)
	plain := v.plaintext(f.ID)
	v.e.SetFrozen(true)
	done := make(chan error, 1)
	p := make([]byte, 300000)
	go func() { done <- v.c.ReadRange(context.Background(), f.ID, 0, p) }()
	testutil.Eventually(t, 5*time.Second, "the read to reach the frozen platform", func() bool { return v.e.Holding() > 0 })
	v.e.SetFrozen(false)
	if err := <-done; err != nil {
		t.Fatalf("a blip shorter than the budget failed the read: %v", err)
	}
	if !bytes.Equal(p, plain[:300000]) {
		t.Fatal("wrong bytes")
	}
}

// A Retry-After longer than the budget is waited out: the platform answered, so it is not "gone".
func TestPolicyRetryAfterNotCounted(t *testing.T) {
	v, f := newPolicyEnv(t)
	v.e.SetFaults(emulator.Faults{RetryAfter: 2 * time.Second})
	v.e.FailNext(emulator.EndpointContents, 1, emulator.Fault429)
	c, err := New(Options{BaseURL: v.srv.URL, APIKey: v.e.APIKey(), Policy: Policy{Budget: time.Second},
		MaxRetryAfter: 5 * time.Second, Limits: map[Scope]float64{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ReadRange(context.Background(), f.ID, 0, make([]byte, 1000)); err != nil {
		t.Fatalf("a 2 s Retry-After under a 1 s budget: %v", err)
	}
}

// An https request redirected to plain http is refused before anything is sent there, so the key
// never travels in clear, and it is not retried.
func TestPolicyRedirectDowngradeRefused(t *testing.T) {
	var plainHits, keyHits atomic.Int64
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		if r.Header.Get("Authorization") != "" {
			keyHits.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"abc"}`))
	}))
	defer plain.Close()
	var tlsHits atomic.Int64
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tlsHits.Add(1)
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusFound)
	}))
	defer secure.Close()

	hc := NewPolicyHTTPClient(Policy{})
	hc.Transport.(*policyTransport).base.TLSClientConfig = secure.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	c, err := New(Options{BaseURL: secure.URL, APIKey: "secret-key-123", HTTPClient: hc, Limits: map[Scope]float64{},
		MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetJob(context.Background(), "abc")
	if !errors.Is(err, ErrInsecureRedirect) {
		t.Fatalf("https -> http redirect: %v, want ErrInsecureRedirect", err)
	}
	if plainHits.Load() != 0 || keyHits.Load() != 0 {
		t.Errorf("the http server got %d requests, %d with the key", plainHits.Load(), keyHits.Load())
	}
	if n := tlsHits.Load(); n != 1 {
		t.Errorf("%d requests to the https server, want 1 (a refused redirect is not retried)", n)
	}
	if !Permanent(err) {
		t.Error("a refused redirect is not Permanent")
	}
}

func TestPermanent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 400}, true},
		{&APIError{Status: 401}, true},
		{&APIError{Status: 403}, true},
		{&APIError{Status: 404}, true},
		{&APIError{Status: 410}, true},
		{&APIError{Status: 416}, true},
		{&APIError{Status: 408}, false},
		{&APIError{Status: 429}, false},
		{&APIError{Status: 500}, false},
		{&APIError{Status: 503}, false},
		{&netError{method: "GET", path: "/", err: errors.New("reset")}, false},
		{ErrShortBody, false},
		{ErrStalled, false},
		{ErrUnavailable, true},
		{ErrInsecureRedirect, true},
		{context.Canceled, false},
	} {
		if got := Permanent(c.err); got != c.want {
			t.Errorf("Permanent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A direct storage read and its fall-back to /contents/ share one budget: with the platform (storage
// and API) frozen the read fails once, within the budget and a header wait, not once per path.
func TestPolicyDirectSourceOneBudget(t *testing.T) {
	e, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		e.SetFrozen(false)
		srv.Close()
		e.Close()
	})
	c, err := New(Options{BaseURL: srv.URL, APIKey: e.APIKey(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Policy: testPolicy})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := e.AddLibraryFile("d.bin", bytes.NewReader(make([]byte, 100000)), 100000)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDirectSource(c, DirectSourceOptions{S3: S3Options{MaxBackoff: 10 * time.Millisecond}})
	ctx := context.Background()
	if err := d.ReadRange(ctx, fi.ID, 0, make([]byte, 1000)); err != nil { // storage client made, file known
		t.Fatal(err)
	}
	e.SetFrozen(true)
	err = watchdog(t, func() error { return d.ReadRange(ctx, fi.ID, 5000, make([]byte, 1000)) })
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("frozen platform: %v, want ErrUnavailable", err)
	}
	if n := c.Health().GaveUp; n != 1 {
		t.Errorf("the direct read and its fall-back ran out of %d budgets, want one between them", n)
	}
}

// TailRange asks for bytes from an offset: the emulator honours Range (206), a range at the end is
// nothing new (416), and the bytes are the same as the whole-file tail's.
func TestTailRange(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	running := v.job(emulator.JobSpec{Name: "running", RunFor: time.Hour,
		Files: []emulator.FileSpec{{RelativePath: "process_output.log", Size: 200000, Seed: 3}}})
	ctx := context.Background()
	v.clk.Sleep(ctx, 30*time.Minute)
	whole, err := v.c.Tail(ctx, running.ID, "1", "process_output.log")
	if err != nil || len(whole) < 1000 {
		t.Fatalf("tail: %d bytes, %v", len(whole), err)
	}
	for _, c := range []struct {
		off, n int64
		want   []byte
	}{
		{0, -1, whole},
		{500, -1, whole[500:]},
		{500, 100, whole[500:600]},
		{int64(len(whole)), -1, nil},
	} {
		b, ranged, err := v.c.TailRange(ctx, running.ID, "1", "process_output.log", c.off, c.n)
		if err != nil || !ranged || !bytes.Equal(b, c.want) {
			t.Errorf("TailRange(%d, %d): %d bytes, ranged %v, %v; want %d bytes", c.off, c.n, len(b), ranged, err, len(c.want))
		}
	}
}
