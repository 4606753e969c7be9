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

func (c *counters) add(endpoint string, status int, out, in int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.c.Requests[endpoint]++
	c.c.BytesOut[endpoint] += out
	c.c.BytesIn[endpoint] += in
	if c.c.Statuses[endpoint] == nil {
		c.c.Statuses[endpoint] = map[int]int64{}
	}
	c.c.Statuses[endpoint][status]++
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

// countingBody counts the request body bytes a handler reads.
type countingBody struct {
	r io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	if b.r == nil {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	return n, err
}

func (b *countingBody) Close() error {
	if b.r == nil {
		return nil
	}
	return b.r.Close()
}
