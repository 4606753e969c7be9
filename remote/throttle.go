package remote

import (
	"context"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Scope is a throttle scope of the platform: every endpoint counts against exactly one.
type Scope string

const (
	ScopeUser             Scope = "user"              // all v3 but credentials
	ScopeJobSubmission    Scope = "job-submission"    // creating and submitting jobs
	ScopeJobsUsage        Scope = "jobs-usage"        // v2 job queries
	ScopeFileAccess       Scope = "file-access"       // v2 files and contents
	ScopeCredentialAccess Scope = "credential-access" // POST /api/v3/credentials/
)

// DefaultLimits are the published per-scope limits, in requests per hour.
var DefaultLimits = map[Scope]float64{
	ScopeUser:             7200,
	ScopeJobSubmission:    1000,
	ScopeJobsUsage:        90000,
	ScopeFileAccess:       90000,
	ScopeCredentialAccess: 90000,
}

// DefaultBurst is how much of a scope's rate the bucket holds: a minute's worth lets a mount start fast
// (a first listing, a burst of parallel reads) while the hour stays under the limit.
const DefaultBurst = time.Minute

// scopeRoutes maps endpoints to scopes; the first match wins. Which endpoint counts against which scope
// is an inference [I]: Rescale's client names the scopes and their rates, not the endpoints each covers
// (the emulator's endpointScope makes the same choice). Patterns match the path segment by segment:
// "*" is any one segment, a final "**" any rest. Method "" is any method.
var scopeRoutes = []struct {
	method  string
	pattern string
	scope   Scope
}{
	{http.MethodPost, "/api/v2/jobs/", ScopeJobSubmission},
	{http.MethodPost, "/api/v2/jobs/*/submit/", ScopeJobSubmission},
	{"", "/api/v2/jobs/**", ScopeJobsUsage},
	{"", "/api/v2/files/**", ScopeFileAccess},
	{"", "/api/v3/credentials/**", ScopeCredentialAccess},
	{"", "/api/v3/**", ScopeUser},
	{"", "/**", ScopeUser}, // anything else: the strictest common scope
}

// scopeOf finds the scope of a request; path is relative to the API base (starts with /api/).
func scopeOf(method, path string) Scope {
	for _, r := range scopeRoutes {
		if (r.method == "" || r.method == method) && matchPath(r.pattern, path) {
			return r.scope
		}
	}
	return ScopeUser
}

func matchPath(pattern, path string) bool {
	ps := strings.Split(strings.Trim(pattern, "/"), "/")
	xs := strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range ps {
		if p == "**" {
			return true
		}
		if i >= len(xs) || (p != "*" && p != xs[i]) {
			return false
		}
	}
	return len(xs) == len(ps)
}

// bucket is a token bucket in the reservation style: a caller takes a token even when none is left and
// sleeps for the debt, so waiting never spins and an injected Sleep that returns at once still works.
type bucket struct {
	rate  float64 // tokens per second
	burst float64

	mu        sync.Mutex // protects tokens, last, notBefore
	tokens    float64
	last      time.Time
	notBefore time.Time // the platform said 429 with Retry-After: nobody in this scope goes before
}

// newBucket sizes a bucket so that no window of an hour ever holds more than perHour requests, which is
// how the platform counts (a sliding hour): the burst is taken out of the hourly budget, so the steady
// rate is (perHour - burst) per hour. A plain perHour/3600 rate plus a burst would overshoot the limit
// by the burst in a busy hour and meet 429s.
func newBucket(perHour float64, burst time.Duration, now time.Time) *bucket {
	burst = min(burst, maxBurst)
	b := max(1, math.Floor(perHour*burst.Hours()))
	if b > perHour/2 {
		b = max(1, perHour/2)
	}
	rate := (perHour - b) / 3600
	if rate <= 0 {
		rate = perHour / 3600 / 2
	}
	return &bucket{rate: rate, burst: b, tokens: b, last: now}
}

// maxBurst keeps at least half of every hour's budget for the steady rate.
const maxBurst = 30 * time.Minute

// reserve takes a token and says how long to wait before using it.
func (b *bucket) reserve(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.After(b.last) {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
		b.last = now
	}
	b.tokens--
	var d time.Duration
	if b.tokens < 0 {
		d = time.Duration(-b.tokens / b.rate * float64(time.Second))
	}
	if w := b.notBefore.Sub(now); w > d {
		d = w
	}
	return d
}

// cancel gives back a token that was reserved but not used (the wait was cancelled).
func (b *bucket) cancel() {
	b.mu.Lock()
	b.tokens++
	b.mu.Unlock()
}

// pause holds the whole scope until t, after the platform answered 429 with Retry-After.
func (b *bucket) pause(t time.Time) {
	b.mu.Lock()
	if t.After(b.notBefore) {
		b.notBefore = t
	}
	b.mu.Unlock()
}

// limiter holds one bucket per limited scope; it is read-only after construction.
type limiter struct {
	buckets map[Scope]*bucket
	now     func() time.Time
	sleep   func(context.Context, time.Duration) error
}

func newLimiter(limits map[Scope]float64, burst time.Duration, now func() time.Time,
	sleep func(context.Context, time.Duration) error) *limiter {
	if limits == nil {
		limits = DefaultLimits
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	l := &limiter{buckets: map[Scope]*bucket{}, now: now, sleep: sleep}
	t := now()
	for s, perHour := range limits {
		if perHour > 0 { // 0 or less: unlimited
			l.buckets[s] = newBucket(perHour, burst, t)
		}
	}
	return l
}

// wait blocks until the scope allows one more request, or ctx ends.
func (l *limiter) wait(ctx context.Context, s Scope) error {
	b := l.buckets[s]
	if b == nil {
		return ctx.Err()
	}
	d := b.reserve(l.now())
	if d <= 0 {
		return ctx.Err()
	}
	if err := l.sleep(ctx, d); err != nil {
		b.cancel()
		return err
	}
	return nil
}

func (l *limiter) pause(s Scope, until time.Time) {
	if b := l.buckets[s]; b != nil {
		b.pause(until)
	}
}
