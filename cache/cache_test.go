package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
)

// readAll reads obj through a Reader in chunks of chunk bytes.
func readAll(t *testing.T, r *Reader, size int64, chunk int) ([]byte, error) {
	t.Helper()
	out := make([]byte, 0, size)
	buf := make([]byte, chunk)
	for off := int64(0); ; {
		n, err := r.ReadAt(context.Background(), buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if n == 0 {
			return out, fmt.Errorf("no progress at %d", off)
		}
	}
}

func TestWholeObjectSizes(t *testing.T) {
	sizes := []int64{0, 1, testBS - 1, testBS, testBS + 1, 5*testBS + 17, 40*testBS + 3}
	for _, size := range sizes {
		for _, chunk := range []int{4096, 128 << 10, 1 << 20} {
			for _, kind := range sourceKinds {
				t.Run(fmt.Sprintf("size=%d/chunk=%d/%s", size, chunk, kind), func(t *testing.T) {
					src := newFake()
					obj := src.add("obj", size)
					c := newTestCache(t, src.as(kind), testOptions(t))
					r := c.NewReader(obj, "")
					defer r.Close()
					got, err := readAll(t, r, size, chunk)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, src.objects["obj"]) {
						t.Fatalf("bytes differ (len %d vs %d)", len(got), size)
					}
					// Cache.ReadAt of the whole object in one call.
					p := make([]byte, size+10)
					n, err := c.ReadAt(context.Background(), obj, p, 0)
					if int64(n) != size || !errors.Is(err, io.EOF) {
						t.Fatalf("ReadAt whole: n=%d err=%v", n, err)
					}
					if !bytes.Equal(p[:n], src.objects["obj"]) {
						t.Fatal("ReadAt bytes differ")
					}
					// Exactly sized read: no EOF required.
					if size > 0 {
						n, err = c.ReadAt(context.Background(), obj, p[:size], 0)
						if int64(n) != size || err != nil {
							t.Fatalf("exact ReadAt: n=%d err=%v", n, err)
						}
					}
					settle(c)
					for b, k := range src.blockFetches("obj", testBS) {
						if k != 1 {
							t.Errorf("block %d fetched %d times", b, k)
						}
					}
				})
			}
		}
	}
}

func TestRandomOffsetReads(t *testing.T) {
	src := newFake()
	size := int64(23*testBS + 1234)
	obj := src.add("obj", size)
	want := src.objects["obj"]
	opts := testOptions(t)
	opts.MemoryBytes = 4 * testBS // small: exercises refetch after eviction too
	c := newTestCache(t, src, opts)
	r := c.NewReader(obj, "")
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		off := rnd.Int64N(size + 100)
		n := rnd.IntN(3*testBS) + 1
		p := make([]byte, n)
		var got int
		var err error
		if i%2 == 0 {
			got, err = c.ReadAt(context.Background(), obj, p, off)
		} else {
			got, err = r.ReadAt(context.Background(), p, off)
		}
		end := min(off+int64(n), size)
		if off >= size {
			end = off
		}
		wantN := int(end - off)
		if got != wantN {
			t.Fatalf("read %d@%d: n=%d want %d (err %v)", n, off, got, wantN, err)
		}
		if wantN < n && !errors.Is(err, io.EOF) || wantN == n && err != nil {
			t.Fatalf("read %d@%d: err=%v", n, off, err)
		}
		if !bytes.Equal(p[:got], want[off:end]) {
			t.Fatalf("read %d@%d: bytes differ", n, off)
		}
	}
}

func TestConcurrentReadersShareOneCall(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 4*testBS)
	src.gate = make(chan struct{})
	c := newTestCache(t, src, testOptions(t))
	const N = 50
	var wg sync.WaitGroup
	errs := make(chan error, N)
	for i := range N {
		wg.Go(func() {
			p := make([]byte, 1000)
			off := int64(testBS + i*100)
			n, err := c.ReadAt(context.Background(), obj, p, off)
			if err == nil && !bytes.Equal(p[:n], src.objects["obj"][off:off+1000]) {
				err = errors.New("bytes differ")
			}
			errs <- err
		})
	}
	eventually(t, "all readers registered", func() bool {
		s := c.Stats()
		return s.Misses+s.WaitHits == N
	})
	close(src.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := src.numCalls(); n != 1 {
		t.Fatalf("%d Source calls, want 1", n)
	}
}

func TestSequentialReadFewLargeRequests(t *testing.T) {
	for _, kind := range sourceKinds {
		t.Run(kind, func(t *testing.T) { testSequentialReadFewLargeRequests(t, kind) })
	}
}

func testSequentialReadFewLargeRequests(t *testing.T, kind string) {
	src := newFake()
	const nblocks = 64
	obj := src.add("big", nblocks*testBS+100)
	opts := testOptions(t)
	opts.MemoryBytes = -1 // no memory tier: read-ahead must not be lost anyway
	c := newTestCache(t, src.as(kind), opts)
	r := c.NewReader(obj, "")
	got, err := readAll(t, r, obj.Size, 16<<10)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, src.objects["big"]) {
		t.Fatal("bytes differ")
	}
	settle(c)
	fetches := src.blockFetches("big", testBS)
	if len(fetches) != nblocks+1 {
		t.Fatalf("%d blocks fetched, want %d", len(fetches), nblocks+1)
	}
	for b, k := range fetches {
		if k != 1 {
			t.Errorf("block %d fetched %d times", b, k)
		}
	}
	calls := src.callList()
	// MinRequestSize is 4 blocks: at most a couple of smaller requests while
	// the window grows, and at the tail.
	if len(calls) > nblocks/4+4 {
		t.Errorf("%d requests for %d blocks, want few large ones", len(calls), nblocks+1)
	}
	large := 0
	for _, cl := range calls {
		if cl.n >= opts.MinRequestSize {
			large++
		}
	}
	if large < len(calls)-4 {
		t.Errorf("only %d of %d requests span >= MinRequestSize", large, len(calls))
	}
	if s := c.Stats(); s.BytesFetched != obj.Size {
		t.Errorf("fetched %d bytes, want %d", s.BytesFetched, obj.Size)
	}
}

func TestRandom4KReadsFetchOnlyTouchedBlocks(t *testing.T) {
	src := newFake()
	const nblocks = 50
	obj := src.add("obj", nblocks*testBS)
	c := newTestCache(t, src, testOptions(t))
	r := c.NewReader(obj, "")
	rnd := rand.New(rand.NewPCG(3, 4))
	touched := map[int64]bool{}
	prevEnd := int64(-1)
	for range 30 {
		off := rnd.Int64N(obj.Size-4096) &^ 4095
		if off == prevEnd || off == 0 {
			continue // that would be sequential
		}
		p := make([]byte, 4096)
		if _, err := r.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
		prevEnd = off + 4096
		touched[off/testBS] = true
		if r.Window() != 0 {
			t.Fatalf("window %d after random read", r.Window())
		}
	}
	settle(c)
	fetches := src.blockFetches("obj", testBS)
	if len(fetches) != len(touched) {
		t.Fatalf("fetched %d blocks, touched %d", len(fetches), len(touched))
	}
	for b := range fetches {
		if !touched[b] {
			t.Errorf("block %d fetched but never touched (read-ahead)", b)
		}
	}
	for _, cl := range src.callList() {
		if cl.n != testBS {
			t.Errorf("request of %d bytes, want one block", cl.n)
		}
	}
}

func TestWindowGrowsThenResetsOnSeek(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 300*testBS)
	opts := testOptions(t)
	c := newTestCache(t, src, opts)
	r := c.NewReader(obj, "")
	p := make([]byte, 8192)
	read := func(off int64) {
		t.Helper()
		if _, err := r.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
	}
	off := int64(0)
	want := []int64{testBS, 2 * testBS, 4 * testBS, 8 * testBS, 16 * testBS, 16 * testBS}
	for i, w := range want {
		read(off)
		off += int64(len(p))
		if got := r.Window(); got != w {
			t.Fatalf("after sequential read %d: window %d, want %d", i, got, w)
		}
	}
	read(100 * testBS) // seek
	if got := r.Window(); got != 0 {
		t.Fatalf("after seek: window %d, want 0", got)
	}
	read(100*testBS + int64(len(p)))
	if got := r.Window(); got != testBS {
		t.Fatalf("sequential after seek: window %d, want %d", got, testBS)
	}
	// Bulk reads (a streaming copy's): after the seek, the window starts wider and doubles as before.
	bulk := make([]byte, bulkRead)
	for i, w := range []int64{0, startWindowBlocks * testBS, 16 * testBS} {
		if _, err := r.ReadAt(context.Background(), bulk, 250*testBS+int64(i*bulkRead)); err != nil {
			t.Fatal(err)
		}
		if got := r.Window(); got != w {
			t.Fatalf("bulk read %d from a seek: window %d, want %d", i, got, w)
		}
	}
	settle(c)
}

func TestParallelLimit(t *testing.T) {
	src := newFake()
	src.latency = 2e6 // 2ms: keeps calls overlapping
	opts := testOptions(t)
	opts.Parallel = 3
	c := newTestCache(t, src, opts)
	var objs []Object
	for i := range 4 {
		objs = append(objs, src.add(fmt.Sprint("o", i), 40*testBS))
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { // sequential streams with read-ahead
			r := c.NewReader(objs[i], "")
			if _, err := readAll(t, r, objs[i].Size, 32<<10); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() { // random readers
			rnd := rand.New(rand.NewPCG(uint64(i), 9))
			p := make([]byte, 4096)
			for range 20 {
				if _, err := c.ReadAt(context.Background(), objs[i], p, rnd.Int64N(objs[i].Size-4096)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	settle(c)
	if m := src.maxInflight(); m > 3 {
		t.Fatalf("max in flight %d > Parallel 3", m)
	}
	if m := c.Stats().MaxInFlight; m > 3 || m < 1 {
		t.Fatalf("Stats.MaxInFlight %d", m)
	}
}

func TestCancelledReaderDoesNotFailOthers(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 2*testBS)
	src.gate = make(chan struct{})
	c := newTestCache(t, src, testOptions(t))
	ctxA, cancelA := context.WithCancel(context.Background())
	resA := make(chan error, 1)
	go func() {
		_, err := c.ReadAt(ctxA, obj, make([]byte, 100), 10)
		resA <- err
	}()
	<-src.started
	resB := make(chan error, 1)
	pb := make([]byte, 100)
	go func() {
		_, err := c.ReadAt(context.Background(), obj, pb, 50)
		resB <- err
	}()
	eventually(t, "B joined", func() bool { return c.Stats().WaitHits == 1 })
	cancelA()
	if err := <-resA; !errors.Is(err, context.Canceled) {
		t.Fatalf("A: %v, want context.Canceled", err)
	}
	close(src.gate)
	if err := <-resB; err != nil {
		t.Fatalf("B: %v", err)
	}
	if !bytes.Equal(pb, src.objects["obj"][50:150]) {
		t.Fatal("B bytes differ")
	}
	if n := src.numCalls(); n != 1 {
		t.Fatalf("%d calls, want 1", n)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name      string
		fail      func(n int, id string, off int64, size int) error
		wantErr   error // nil: success
		wantCalls int
	}{
		{"transient then ok", func(n int, _ string, _ int64, _ int) error {
			if n <= 2 {
				return errTransient
			}
			return nil
		}, nil, 3},
		{"short body then ok", func(n int, _ string, _ int64, _ int) error {
			if n == 1 {
				return errShort
			}
			return nil
		}, nil, 2},
		{"permanent not retried", func(int, string, int64, int) error { return errNotFound }, errNotFound, 1},
		{"exhausted", func(int, string, int64, int) error { return errTransient }, errTransient, 4},
		{"short every time", func(int, string, int64, int) error { return errShort }, io.ErrUnexpectedEOF, 4},
	}
	for _, tt := range tests {
		for _, kind := range sourceKinds {
			t.Run(tt.name+"/"+kind, func(t *testing.T) {
				src := newFake()
				obj := src.add("obj", 3*testBS)
				src.fail = tt.fail
				c := newTestCache(t, src.as(kind), testOptions(t))
				p := make([]byte, 2*testBS)
				n, err := c.ReadAt(context.Background(), obj, p, testBS/2)
				if tt.wantErr == nil {
					if err != nil || n != len(p) || !bytes.Equal(p, src.objects["obj"][testBS/2:testBS/2+len(p)]) {
						t.Fatalf("n=%d err=%v or bytes differ", n, err)
					}
				} else {
					if !errors.Is(err, tt.wantErr) || n != 0 {
						t.Fatalf("n=%d err=%v, want 0 and %v", n, err, tt.wantErr)
					}
				}
				if got := src.numCalls(); got != tt.wantCalls {
					t.Fatalf("%d calls, want %d", got, tt.wantCalls)
				}
				if tt.wantErr != nil {
					// A failed fetch is not cached: the next read tries again.
					src.fail = nil
					n, err := c.ReadAt(context.Background(), obj, p, testBS/2)
					if err != nil || n != len(p) || !bytes.Equal(p, src.objects["obj"][testBS/2:testBS/2+len(p)]) {
						t.Fatalf("after recovery: n=%d err=%v", n, err)
					}
				}
			})
		}
	}
}

func TestMemoryBounded(t *testing.T) {
	src := newFake()
	opts := testOptions(t)
	opts.MemoryBytes = 8 * testBS
	c := newTestCache(t, src, opts)
	for i := range 3 {
		obj := src.add(fmt.Sprint("o", i), 100*testBS)
		r := c.NewReader(obj, "")
		if _, err := readAll(t, r, obj.Size, 128<<10); err != nil {
			t.Fatal(err)
		}
		r.Close()
		settle(c)
		s := c.Stats()
		if s.MemoryBytes > opts.MemoryBytes {
			t.Fatalf("memory tier holds %d > %d", s.MemoryBytes, opts.MemoryBytes)
		}
		if s.ReadaheadBytes > int64(opts.Parallel)*opts.MaxRequestSize {
			t.Fatalf("read-ahead holds %d", s.ReadaheadBytes)
		}
	}
}

func TestDrop(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 3*testBS)
	opts := testOptions(t)
	opts.DiskDir = t.TempDir()
	c := newTestCache(t, src, opts)
	p := make([]byte, obj.Size)
	if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil {
		t.Fatal(err)
	}
	settle(c)
	src.reset()
	if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil || src.numCalls() != 0 {
		t.Fatalf("cached read: err=%v calls=%d", err, src.numCalls())
	}
	c.Drop("obj")
	if s := c.Stats(); s.DiskBlocks != 0 {
		t.Fatalf("%d disk blocks after Drop", s.DiskBlocks)
	}
	if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil || src.numCalls() == 0 {
		t.Fatalf("after Drop: err=%v calls=%d", err, src.numCalls())
	}
	if !bytes.Equal(p, src.objects["obj"]) {
		t.Fatal("bytes differ")
	}
}

func TestClosed(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 10)
	c, err := New(src, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.ReadAt(context.Background(), obj, make([]byte, 5), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("err=%v", err)
	}
}

func TestCloseWithFetchesInFlight(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 20*testBS)
	src.gate = make(chan struct{}) // never opened: fetches hang until Close cancels them
	opts := testOptions(t)
	opts.DiskDir = t.TempDir()
	c, err := New(src, opts)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Go(func() {
			r := c.NewReader(obj, "")
			_, err := r.ReadAt(context.Background(), make([]byte, 1000), int64(i)*testBS)
			errs <- err
		})
	}
	eventually(t, "fetches started", func() bool { return src.numCalls() > 0 })
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Fatal("read succeeded without data")
		}
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("err=%v, want ErrClosed", err)
		}
	}
}
