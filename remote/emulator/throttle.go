package emulator

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// DefaultLimits are the published per-scope limits, requests per hour (rescale-api.md, "Throttling").
var DefaultLimits = map[string]int{
	ScopeUser:             7200,
	ScopeJobSubmission:    1000,
	ScopeJobsUsage:        90000,
	ScopeFileAccess:       90000,
	ScopeCredentialAccess: 90000,
}

// throttleWindow is the period the limits count over: the rates are published per hour, and the
// emulator throttles like Django REST framework's SimpleRateThrottle, a sliding window of that length [I].
const throttleWindow = time.Hour

func throttledDetail(secs int) string {
	return fmt.Sprintf("Request was throttled. Expected available in %d seconds.", secs)
}

// throttler is DRF's SimpleRateThrottle: per scope, the times of the requests within the window.
type throttler struct {
	mu      sync.Mutex             // guards history
	limits  map[string]int         // immutable after newThrottler
	history map[string][]time.Time // scope -> request times, oldest first
}

func newThrottler(limits map[string]int) *throttler {
	t := &throttler{limits: map[string]int{}, history: map[string][]time.Time{}}
	if limits == nil {
		limits = DefaultLimits
	}
	for k, v := range limits {
		t.limits[k] = v
	}
	return t
}

// allow records a request in scope at now, or answers 429 with Retry-After and returns false.
func (t *throttler) allow(w http.ResponseWriter, scope string, now time.Time) bool {
	limit := t.limits[scope]
	if limit <= 0 {
		return true
	}
	t.mu.Lock()
	h := t.history[scope]
	cutoff := now.Add(-throttleWindow)
	i := 0
	for i < len(h) && !h[i].After(cutoff) {
		i++
	}
	h = h[i:]
	if len(h) < limit {
		t.history[scope] = append(h, now)
		t.mu.Unlock()
		return true
	}
	t.history[scope] = h
	// DRF's wait(): the rest of the oldest request's window, spread over the requests that will free up.
	remaining := throttleWindow - now.Sub(h[0])
	available := limit - len(h) + 1
	wait := remaining
	if available > 0 {
		wait = remaining / time.Duration(available)
	}
	t.mu.Unlock()
	secs := max(1, int((wait+time.Second-1)/time.Second))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeDetail(w, http.StatusTooManyRequests, throttledDetail(secs))
	return false
}
