package cache

// A counting fake Source: the interface the cache reads through, so a fake is
// the right level here (the real client is tested against the emulator).

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

type rangeCall struct {
	id  string
	off int64
	n   int64
}

type fakeSource struct {
	mu       sync.Mutex
	objects  map[string][]byte
	calls    []rangeCall // every call, in order
	bytes    int64       // bytes successfully returned
	inflight int
	maxIn    int

	// hooks, set before use
	latency time.Duration // per request
	bps     int64         // bytes per second per request (0 = unlimited)
	// fail decides the outcome of call number n (1-based) of (id, off, len):
	// nil = success; errShort = fill half and fail like a cut body.
	fail func(n int, id string, off int64, size int) error
	// gate, if set, makes every call wait until it is closed (or ctx ends).
	gate chan struct{}
	// started gets a value (non-blocking) whenever a call starts.
	started chan rangeCall
}

var (
	errShort     = errors.New("fake: short body")
	errTransient = errors.New("fake: 503")
	errNotFound  = errors.New("fake: not found")
)

func newFake() *fakeSource {
	return &fakeSource{objects: make(map[string][]byte), started: make(chan rangeCall, 1024)}
}

// add stores a pseudo-random (incompressible) object of size bytes.
func (f *fakeSource) add(id string, size int64) Object {
	r := rand.New(rand.NewPCG(uint64(size), uint64(len(id))))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return f.put(id, b)
}

// addQuick is add for large objects: the same kind of bytes, made a block of keystream at a time
// rather than a byte at a time.
func (f *fakeSource) addQuick(id string, size int64) Object {
	var seed [32]byte
	copy(seed[:], id)
	b := make([]byte, size)
	_, _ = rand.NewChaCha8(seed).Read(b)
	return f.put(id, b)
}

func (f *fakeSource) put(id string, b []byte) Object {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[id] = b
	return Object{ID: id, Size: int64(len(b))}
}

func (f *fakeSource) ReadRange(ctx context.Context, id string, off int64, p []byte) error {
	return f.serve(ctx, id, off, [][]byte{p})
}

// sourceKinds: tests run against the fake as a plain Source and as a VectorSource.
var sourceKinds = []string{"plain", "vector"}

func (f *fakeSource) as(kind string) Source {
	if kind == "vector" {
		return vecSource{f}
	}
	return f
}

// vecSource is the fake as a VectorSource.
type vecSource struct{ *fakeSource }

func (v vecSource) ReadRangeVec(ctx context.Context, id string, off int64, bufs [][]byte) error {
	return v.serve(ctx, id, off, bufs)
}

// sumSource is the fake as a ChecksumSource; skew is added to every sum it reports (0: right ones).
type sumSource struct {
	*fakeSource
	skew uint32
}

func (v sumSource) ReadRangeVec(ctx context.Context, id string, off int64, bufs [][]byte) error {
	return v.serve(ctx, id, off, bufs)
}

func (v sumSource) ReadRangeVecSum(ctx context.Context, id string, off int64, bufs [][]byte, sums []uint32) error {
	if err := v.serve(ctx, id, off, bufs); err != nil {
		return err
	}
	for i, b := range bufs {
		sums[i] = crc32.Checksum(b, castagnoli) + v.skew
	}
	return nil
}

// fill copies src into the consecutive bufs.
func fill(bufs [][]byte, src []byte) {
	for _, b := range bufs {
		if len(src) == 0 {
			return
		}
		src = src[copy(b, src):]
	}
}

func (f *fakeSource) serve(ctx context.Context, id string, off int64, bufs [][]byte) error {
	var size int
	for _, b := range bufs {
		size += len(b)
	}
	f.mu.Lock()
	rc := rangeCall{id, off, int64(size)}
	f.calls = append(f.calls, rc)
	n := len(f.calls)
	f.inflight++
	f.maxIn = max(f.maxIn, f.inflight)
	obj, ok := f.objects[id]
	fail, gate := f.fail, f.gate
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inflight--
		f.mu.Unlock()
	}()
	select {
	case f.started <- rc:
	default:
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	// The modelled transfer time runs from here; the copy below overlaps it
	// (as a network body does), so the fake's memcpy does not add to it.
	d := f.latency
	if f.bps > 0 {
		d += time.Duration(float64(size) / float64(f.bps) * float64(time.Second))
	}
	deadline := time.Now().Add(d)
	defer func() {
		if wait := time.Until(deadline); wait > 0 && d > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
	}()
	if !ok {
		return errNotFound
	}
	end := off + int64(size)
	if off < 0 || end > int64(len(obj)) {
		return fmt.Errorf("fake: range [%d,%d) outside object of %d", off, end, len(obj))
	}
	if fail != nil {
		if err := fail(n, id, off, size); err != nil {
			if errors.Is(err, errShort) {
				fill(bufs, obj[off:off+int64(size/2)])
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	fill(bufs, obj[off:end])
	f.mu.Lock()
	f.bytes += int64(size)
	f.mu.Unlock()
	return nil
}

func (f *fakeSource) numCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

func (f *fakeSource) callList() []rangeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]rangeCall(nil), f.calls...)
}

func (f *fakeSource) maxInflight() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxIn
}

func (f *fakeSource) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.bytes, f.maxIn = nil, 0, 0
}

// blockFetches counts, per block index of id, how many calls covered it.
func (f *fakeSource) blockFetches(id string, bs int64) map[int64]int {
	m := make(map[int64]int)
	for _, c := range f.callList() {
		if c.id != id {
			continue
		}
		for i := c.off / bs; i*bs < c.off+c.n; i++ {
			m[i]++
		}
	}
	return m
}

const testBS = 64 << 10

// testOptions are small, fast options: 64 KiB blocks, quick retries.
func testOptions(t testing.TB) Options {
	return Options{
		BlockSize:      testBS,
		MemoryBytes:    64 << 20,
		Parallel:       8,
		Readahead:      1 << 20,
		MaxRequestSize: 512 << 10,
		MinRequestSize: 256 << 10,
		Retry:          RetryPolicy{Attempts: 4, Initial: time.Millisecond, Max: 4 * time.Millisecond},
		Permanent:      func(err error) bool { return errors.Is(err, errNotFound) },
		Logger:         testLogger(t),
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newTestCache(t testing.TB, src Source, opts Options) *Cache {
	t.Helper()
	c, err := New(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// settle waits for background fetches (read-ahead) and ristretto sets.
func settle(c *Cache) {
	c.wg.Wait()
	if c.mem != nil {
		c.mem.wait()
	}
}

// eventually polls cond (no timing is asserted; the deadline only stops a hung test).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, cond)
}
