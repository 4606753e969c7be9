package emulator

import (
	"io"
	"maps"
	"sync"
)

// Counters is a snapshot of what went over the wire, per endpoint name (the Endpoint* constants).
type Counters struct {
	Requests map[string]int64         `json:"requests"`
	BytesOut map[string]int64         `json:"bytesOut"` // response body bytes
	BytesIn  map[string]int64         `json:"bytesIn"`  // request body bytes read
	Statuses map[string]map[int]int64 `json:"statuses"` // endpoint -> HTTP status -> count
	Faults   map[string]int64         `json:"faults"`   // injected fault kind (Fault*.String()) -> count
}

// counters accumulates Counters.
type counters struct {
	mu sync.Mutex // guards c
	c  Counters
}

func (c *counters) init() {
	if c.c.Requests == nil {
		c.c = Counters{Requests: map[string]int64{}, BytesOut: map[string]int64{}, BytesIn: map[string]int64{},
			Statuses: map[string]map[int]int64{}, Faults: map[string]int64{}}
	}
}

// The counters move as things happen, not when a handler returns: a request is counted on arrival,
// its status when the headers are written, its body bytes as they are written or read. So a client
// that has its answer always finds it counted (a handler returns only after the client may have the
// whole body, and tests assert the counters right after the call).

// StatusClientClosedRequest is what Counters.Statuses records for a request whose client left while
// the emulator held it (a freeze, a latency, a stall before the headers) before any header was written:
// nginx's 499 "Client Closed Request". Nothing was answered, so it must not count as the 200 net/http
// would have sent had the client stayed (Succeeded would count it, and a test asserting the answers a
// client got would be misled); and it must still count, apart from the answers, so that the statuses of
// an endpoint add up to its requests and a test can see that a client gave up.
const StatusClientClosedRequest = 499

// arrive counts a request to endpoint.
func (c *counters) arrive(endpoint string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.c.Requests[endpoint]++
}

// status counts an answer's status.
func (c *counters) status(endpoint string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	if c.c.Statuses[endpoint] == nil {
		c.c.Statuses[endpoint] = map[int]int64{}
	}
	c.c.Statuses[endpoint][status]++
}

// bytes counts body bytes sent (out) and read (in).
func (c *counters) bytes(endpoint string, out, in int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.c.BytesOut[endpoint] += out
	c.c.BytesIn[endpoint] += in
}

func (c *counters) fault(kind Fault) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.c.Faults[kind.String()]++
}

// Counters returns a snapshot of the request, byte, status and fault counters.
func (e *Emulator) Counters() Counters {
	e.counters.mu.Lock()
	defer e.counters.mu.Unlock()
	e.counters.init()
	c := e.counters.c
	out := Counters{Requests: maps.Clone(c.Requests), BytesOut: maps.Clone(c.BytesOut), BytesIn: maps.Clone(c.BytesIn),
		Statuses: map[string]map[int]int64{}, Faults: maps.Clone(c.Faults)}
	for k, v := range c.Statuses {
		out.Statuses[k] = maps.Clone(v)
	}
	return out
}

// ResetCounters zeroes every counter.
func (e *Emulator) ResetCounters() {
	e.counters.mu.Lock()
	defer e.counters.mu.Unlock()
	e.counters.c = Counters{}
	e.counters.init()
}

// Total sums Requests over every endpoint.
func (c Counters) Total() int64 {
	var n int64
	for _, v := range c.Requests {
		n += v
	}
	return n
}

// Succeeded counts the requests to endpoint answered with a 2xx status.
func (c Counters) Succeeded(endpoint string) int64 {
	var n int64
	for status, k := range c.Statuses[endpoint] {
		if status/100 == 2 {
			n += k
		}
	}
	return n
}

// countingBody counts the request body bytes a handler reads, as it reads them.
type countingBody struct {
	r        io.ReadCloser
	c        *counters
	endpoint string
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.r == nil {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if n > 0 {
		b.c.bytes(b.endpoint, 0, int64(n))
	}
	return n, err
}

func (b *countingBody) Close() error {
	if b.r == nil {
		return nil
	}
	return b.r.Close()
}
