package main

import (
	"fmt"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// platformLine says whether the platform answers, when it last did, and how many calls wait on it: the
// one place an outage shows in `rescalefs status` (the log says it once, when it starts and ends).
func platformLine(h *remote.HealthSnapshot, now time.Time) string {
	if h == nil {
		return ""
	}
	last := "never"
	if !h.LastAnswer.IsZero() {
		last = now.Sub(h.LastAnswer).Round(time.Second).String() + " ago"
	}
	state := "answering"
	if h.Down {
		state = "NOT ANSWERING (reads fail with an I/O error until it does)"
	}
	return fmt.Sprintf("platform: %s; last answer %s; %d calls in progress, %d waiting to retry after a failure",
		state, last, h.Calls, h.Retrying)
}
