package remote

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Retry defaults, as Rescale's own client does it: up to 10 attempts, backoff from 1 s to 30 s.
const (
	DefaultMaxAttempts = 10
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 30 * time.Second
	// DefaultMaxRetryAfter bounds how long one Retry-After is waited out. The hourly scopes can ask for
	// most of an hour; a reader blocked that long is worse than an error it can see.
	DefaultMaxRetryAfter = 5 * time.Minute
)

// backoff is the wait before retry number attempt (1 for the first retry): exponential from min,
// capped at max, with jitter so parallel readers that failed together do not come back together.
// The result lies in [d/2, d] where d = min(max, min*2^(attempt-1)).
func backoff(attempt int, min, max time.Duration) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := min
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date. ok is false when the
// header is absent or unreadable.
func parseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(n * float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d = t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// idempotent methods may be sent twice without changing the outcome, so they are retried on 5xx and
// on any transport error.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodDelete, http.MethodPut:
		return true
	}
	return false
}

// notSent says whether a transport error certainly happened before any byte of the request reached the
// server (a refused or failed dial), so that even a POST may be sent again.
func notSent(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// retryableBody marks an error while reading a successful answer's body (a cut connection): an
// idempotent request is sent again.
type retryableBody struct{ err error }

func (e *retryableBody) Error() string { return e.err.Error() }
func (e *retryableBody) Unwrap() error { return e.err }

// sleepCtx is the default Sleep: a timer that ctx can cut short.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
