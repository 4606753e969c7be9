package cache

import (
	"context"
	"sync/atomic"
)

// waits counts what reads are blocked on, for the mount's status: readers waiting for a fetch, and
// of the fetches, those waiting for a Parallel slot and those backing off after a failed Source call
// (with what it failed with). Kept apart from the fetcher so the fetcher's code only marks where a
// wait begins and ends.
type waits struct {
	readers  atomic.Int64           // readers blocked on a fetch not yet done
	slot     atomic.Int64           // fetches waiting for a Parallel slot
	room     atomic.Int64           // fetches waiting for room in the fetch budget (makeRoomLocked)
	retrying atomic.Int64           // fetches backing off before another Source call
	lastErr  atomic.Pointer[string] // what the latest fetch to back off failed with
}

// block waits for done as a reader, counted while it blocks; false when ctx ended first.
func (w *waits) block(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
	}
	w.readers.Add(1)
	defer w.readers.Add(-1)
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// acquire takes a Parallel slot, counted as waiting while none is free; false when the Cache is
// closing.
func (c *Cache) acquire() bool {
	select {
	case c.sem <- struct{}{}:
		return true
	default:
	}
	c.waits.slot.Add(1)
	defer c.waits.slot.Add(-1)
	select {
	case c.sem <- struct{}{}:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// backoff counts a fetch backing off after err until the returned func is called.
func (w *waits) backoff(err error) (resume func()) {
	msg := err.Error()
	w.lastErr.Store(&msg)
	w.retrying.Add(1)
	return func() { w.retrying.Add(-1) }
}

// fill sets the waiting fields of s.
func (w *waits) fill(s *Stats) {
	s.ReadsWaiting, s.SlotWaits, s.RetryWaits = w.readers.Load(), w.slot.Load(), w.retrying.Load()
	s.RoomWaits = w.room.Load()
	if p := w.lastErr.Load(); p != nil && s.RetryWaits > 0 {
		s.RetryError = *p
	}
}
