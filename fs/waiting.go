package fs

import (
	"fmt"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
)

// Waiting says how many reads are blocked on the platform and why, for .rescalefs/status and
// `rescalefs status`: the count from the cache's fetcher, the reasons from the fetcher (a --parallel
// slot, room in the fetch budget, a backoff after a failed read) and from the API client's network
// policy (a retry after an error, a 429's Retry-After, a platform not answering).
type Waiting struct {
	Reads int64    `json:"reads"`         // reads blocked on a fetch from the platform
	Why   []string `json:"why,omitempty"` // the reasons, most telling first
}

// waitingOf reads c and h (nil: unknown) as of now.
func waitingOf(c *cache.Stats, h *remote.HealthSnapshot, now time.Time) Waiting {
	var w Waiting
	if c == nil {
		return w
	}
	w.Reads = c.ReadsWaiting
	if h != nil {
		if h.Down {
			w.Why = append(w.Why, "the platform is not answering (reads fail with an I/O error until it does)")
		}
		if h.Throttled > 0 {
			w.Why = append(w.Why, fmt.Sprintf("%d platform calls throttled (429) until %s (in %v)", h.Throttled,
				h.ThrottledUntil.UTC().Format(time.TimeOnly)+" UTC", max(0, h.ThrottledUntil.Sub(now)).Round(time.Second)))
		}
		if h.Retrying > 0 {
			w.Why = append(w.Why, fmt.Sprintf("%d platform calls retrying after: %s", h.Retrying, h.RetryError))
		}
	}
	if c.RetryWaits > 0 {
		w.Why = append(w.Why, fmt.Sprintf("%d reads backing off after: %s", c.RetryWaits, c.RetryError))
	}
	if c.SlotWaits > 0 {
		w.Why = append(w.Why, fmt.Sprintf("%d reads waiting for a --parallel slot (%d in flight)", c.SlotWaits, c.InFlight))
	}
	if c.RoomWaits > 0 {
		// Not the platform: the fetch budget is full of read-ahead, and a miss beyond the headroom
		// read-ahead leaves waits for other misses to end rather than drop a reader's read-ahead.
		w.Why = append(w.Why, fmt.Sprintf("%d reads waiting for room in the fetch budget, full of read-ahead, until other reads' fetches end (%d in flight)",
			c.RoomWaits, c.InFlight))
	}
	if len(w.Why) == 0 && w.Reads > 0 && c.InFlight > 0 {
		w.Why = append(w.Why, fmt.Sprintf("%d reads in flight, waiting for the platform's answer", c.InFlight))
	}
	return w
}
