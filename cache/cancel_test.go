package cache

import (
	"context"
	"errors"
	"testing"
)

// stuckSource never answers: each call waits for its context, as a read on a frozen platform does
// until the network policy gives up.
type stuckSource struct{ calls chan struct{} }

func (s stuckSource) ReadRange(ctx context.Context, _ string, _ int64, _ []byte) error {
	s.calls <- struct{}{}
	<-ctx.Done()
	return ctx.Err()
}

// Cancel, the first step of the owner's shutdown order, frees a reader stuck on the platform and the
// reads waiting for a --parallel slot behind it, and the counts of what waits go back to zero;
// Wait then returns, and Close after it has nothing left to wait for.
func TestCancelFreesReadsStuckOnThePlatform(t *testing.T) {
	src := stuckSource{calls: make(chan struct{}, 16)}
	c := newTestCache(t, src, Options{BlockSize: testBS, MemoryBytes: -1, Parallel: 1, Readahead: -1,
		MinRequestSize: testBS, MaxRequestSize: testBS})
	obj := Object{ID: "f", Size: 4 * testBS}
	errs := make(chan error, 2)
	for _, off := range []int64{0, 2 * testBS} { // two spans: one in flight, one waiting for the slot
		go func() {
			_, err := c.NewReader(obj, "").ReadAt(context.Background(), make([]byte, 100), off)
			errs <- err
		}()
	}
	<-src.calls
	eventually(t, "two reads waiting, one of them for the slot", func() bool {
		s := c.Stats()
		return s.ReadsWaiting == 2 && s.SlotWaits == 1 && s.InFlight == 1
	})
	c.Cancel()
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("read after Cancel: %v, want ErrClosed", err)
		}
	}
	c.Wait()
	if s := c.Stats(); s.ReadsWaiting != 0 || s.SlotWaits != 0 || s.InFlight != 0 {
		t.Errorf("after Cancel and Wait: %d reads, %d slot waits, %d in flight; want none", s.ReadsWaiting, s.SlotWaits, s.InFlight)
	}
	if _, err := c.NewReader(obj, "").ReadAt(context.Background(), make([]byte, 100), testBS); !errors.Is(err, ErrClosed) {
		t.Errorf("read of a new block after Cancel: %v, want ErrClosed", err)
	}
}
