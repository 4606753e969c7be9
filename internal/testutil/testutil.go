// Package testutil holds helpers the tests of several packages share.
package testutil

import (
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// RandomBytes returns n pseudo-random bytes, the same for the same seed: file contents that do not
// compress and that a test can generate again to compare with.
func RandomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// Eventually polls cond until it holds, failing the test after within: a deadline that only stops a
// hung test, never a timing the test asserts, and never a fixed sleep in its place.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(delay)
	}
}

// Clock is a clock a test moves by hand, with timers that fire only when Advance reaches them (fs.Clock):
// the test, not the machine's load, decides when a timer's time has come. Safe for concurrent use.
type Clock struct {
	mu      sync.Mutex // guards t and waiters
	t       time.Time
	waiters []clockWaiter // the timers not fired yet, in the order set
}

// clockWaiter is one timer of a Clock: c receives the clock's time once it reaches at.
type clockWaiter struct {
	at time.Time
	c  chan time.Time // buffered (1): firing never blocks under mu
}

// NewClock returns a Clock showing t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d, firing the timers it reaches before it returns.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	pending := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.t) {
			pending = append(pending, w)
			continue
		}
		w.c <- c.t
	}
	clear(c.waiters[len(pending):])
	c.waiters = pending
}

// After is time.After on the clock: the channel receives once Advance has moved the clock d on, at
// once when d <= 0 (then it is never a waiter).
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.t
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: c.t.Add(d), c: ch})
	return ch
}

// Waiters is how long each timer not fired yet has left, in the order they were set: a test waits
// for a goroutine to be waiting on the clock (a poller between rounds), and sees when it is due.
func (c *Clock) Waiters() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	left := make([]time.Duration, len(c.waiters))
	for i, w := range c.waiters {
		left[i] = w.at.Sub(c.t)
	}
	return left
}

// LogBuffer keeps what a logger wrote, for assertions on log lines, and echoes it to the test log.
type LogBuffer struct {
	t  testing.TB
	mu sync.Mutex // guards b
	b  strings.Builder
}

// CaptureLog returns a logger at level that writes to a LogBuffer (and the test log).
func CaptureLog(t testing.TB, level slog.Level) (*slog.Logger, *LogBuffer) {
	lb := &LogBuffer{t: t}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: level})), lb
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// String is everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
