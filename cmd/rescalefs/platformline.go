package main

import (
	"fmt"
	"strings"

	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/remote"
)

// healthLine says whether the platform answers, as the API client's network policy judges it, and how
// many calls wait on it: with platformLine (when it last answered), the place an outage shows in
// `rescalefs status` (the log says it once, when it starts and ends).
func healthLine(h *remote.HealthSnapshot) string {
	if h == nil {
		return ""
	}
	state := "answering"
	if h.Down {
		state = "NOT ANSWERING (reads fail with an I/O error until it does)"
	}
	return fmt.Sprintf("platform calls: %s; %d in progress, %d waiting to retry after a failure",
		state, h.Calls, h.Retrying)
}

// waitingLine says how many reads wait on the platform and why; "" when none waits.
func waitingLine(w rfs.Waiting) string {
	if w.Reads == 0 && len(w.Why) == 0 {
		return ""
	}
	s := fmt.Sprintf("reads waiting: %d", w.Reads)
	if len(w.Why) > 0 {
		s += " (" + strings.Join(w.Why, "; ") + ")"
	}
	return s
}
