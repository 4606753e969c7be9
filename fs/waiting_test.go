package fs

import (
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
)

func TestWaitingOf(t *testing.T) {
	now := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		c    *cache.Stats
		h    *remote.HealthSnapshot
		want []string // substrings of the reasons, in order; nil = no reason
	}{
		{"no cache", nil, &remote.HealthSnapshot{Down: true}, nil},
		{"idle", &cache.Stats{}, &remote.HealthSnapshot{}, nil},
		{"answer awaited", &cache.Stats{ReadsWaiting: 1, InFlight: 1}, &remote.HealthSnapshot{Calls: 1},
			[]string{"1 reads in flight, waiting for the platform's answer"}},
		{"down, retrying, backing off, no slot", &cache.Stats{ReadsWaiting: 5, InFlight: 2, SlotWaits: 3, RetryWaits: 1, RetryError: "cut"},
			&remote.HealthSnapshot{Down: true, Retrying: 1, RetryError: "GET x: 503"},
			[]string{"not answering", "1 platform calls retrying after: GET x: 503", "1 reads backing off after: cut",
				"3 reads waiting for a --parallel slot (2 in flight)"}},
		// A miss beyond the misses' headroom waits for other misses to end rather than drop a reader's
		// read-ahead (cache.Stats.RoomWaits): that is why it waits, not the platform's answer.
		{"no room in the fetch budget", &cache.Stats{ReadsWaiting: 3, InFlight: 2, RoomWaits: 1},
			&remote.HealthSnapshot{Calls: 2},
			[]string{"1 reads waiting for room in the fetch budget, full of read-ahead, until other reads' fetches end (2 in flight)"}},
		{"backing off, no slot, no room", &cache.Stats{ReadsWaiting: 6, InFlight: 2, SlotWaits: 3, RoomWaits: 2, RetryWaits: 1, RetryError: "cut"},
			&remote.HealthSnapshot{},
			[]string{"1 reads backing off after: cut", "3 reads waiting for a --parallel slot (2 in flight)",
				"2 reads waiting for room in the fetch budget"}},
		{"throttled", &cache.Stats{ReadsWaiting: 1, InFlight: 1},
			&remote.HealthSnapshot{Throttled: 1, ThrottledUntil: now.Add(90 * time.Second)},
			[]string{"1 platform calls throttled (429) until 13:01:30 UTC (in 1m30s)"}},
	} {
		w := waitingOf(c.c, c.h, now)
		if len(w.Why) != len(c.want) {
			t.Errorf("%s: why = %q, want %d reasons", c.name, w.Why, len(c.want))
			continue
		}
		for i, want := range c.want {
			if !strings.Contains(w.Why[i], want) {
				t.Errorf("%s: reason %d = %q, want it to contain %q", c.name, i, w.Why[i], want)
			}
		}
		if c.c != nil && w.Reads != c.c.ReadsWaiting {
			t.Errorf("%s: reads = %d, want %d", c.name, w.Reads, c.c.ReadsWaiting)
		}
	}
}
