package fs

import "time"

// Clock is the time a mount lives by: what time it is (the age of a list, of a listing, of a missing
// name), and when the poller's next round is due. nil in Options is the real clock. A test passes a
// clock it moves by hand (internal/testutil.Clock), so that it, not a real timer racing the test's
// own actions, decides when the next round comes.
type Clock interface {
	Now() time.Time
	// After is time.After on this clock: the channel receives the time once d has passed (at once
	// when d <= 0).
	After(d time.Duration) <-chan time.Time
}

// realClock is the machine's clock.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
