package testutil

import (
	"slices"
	"testing"
	"time"
)

// A Clock's timers fire when Advance reaches them, not before, each once, with the clock's time;
// Waiters shows those not fired yet.
func TestClockTimers(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	c := NewClock(t0)
	fired := func(ch <-chan time.Time) (time.Time, bool) {
		select {
		case at := <-ch:
			return at, true
		default:
			return time.Time{}, false
		}
	}
	if at, ok := fired(c.After(0)); !ok || !at.Equal(t0) {
		t.Fatalf("After(0): fired %v at %v, want at once at %v", ok, at, t0)
	}
	if w := c.Waiters(); len(w) != 0 {
		t.Fatalf("waiters %v after After(0), want none", w)
	}
	a, b := c.After(time.Minute), c.After(time.Second)
	if w := c.Waiters(); !slices.Equal(w, []time.Duration{time.Minute, time.Second}) {
		t.Fatalf("waiters %v, want [1m0s 1s]", w)
	}
	c.Advance(time.Second - 1)
	if _, ok := fired(b); ok {
		t.Fatal("a 1s timer fired after 1s-1ns")
	}
	c.Advance(1)
	if at, ok := fired(b); !ok || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("the 1s timer at 1s: fired %v at %v", ok, at)
	}
	if _, ok := fired(a); ok {
		t.Fatal("the 1m timer fired at 1s")
	}
	if w := c.Waiters(); !slices.Equal(w, []time.Duration{time.Minute - time.Second}) {
		t.Fatalf("waiters %v, want [59s]", w)
	}
	c.Advance(time.Hour)
	if at, ok := fired(a); !ok || !at.Equal(t0.Add(time.Hour+time.Second)) {
		t.Fatalf("the 1m timer after an hour: fired %v at %v", ok, at)
	}
	c.Advance(time.Hour)
	if _, ok := fired(a); ok {
		t.Fatal("the 1m timer fired twice")
	}
	if w := c.Waiters(); len(w) != 0 {
		t.Fatalf("waiters %v after every timer fired, want none", w)
	}
}
