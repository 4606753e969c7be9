package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentReadersKeepTheirReadahead: sequential readers whose read-ahead windows together exceed
// the fetch budget do not evict each other's unconsumed read-ahead: with no memory or disk tier to fall
// back on, an evicted block would be fetched a second time. Every block of every object is fetched
// exactly once, nothing read ahead is dropped, and the budget holds.
func TestConcurrentReadersKeepTheirReadahead(t *testing.T) {
	const readers, nblocks = 4, 96
	src := newFake()
	c := newReadaheadOnlyCache(t, src)
	var objs []Object
	for i := range readers {
		objs = append(objs, src.add(fmt.Sprintf("obj%d", i), nblocks*testBS))
	}
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for _, obj := range objs {
		wg.Go(func() {
			r := c.NewReader(obj, "")
			defer r.Close()
			got, err := readAll(t, r, obj.Size, 128<<10)
			if err == nil && !bytes.Equal(got, src.objects[obj.ID]) {
				err = fmt.Errorf("%s: wrong bytes", obj.ID)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	checkFetchedOnce(t, c, src, objs)
}

// A reader reaching a read-ahead block while its fetch is still storing it (a call stays registered
// until the tiers have its blocks) consumes it, so it leaves the ready list. It used to stay there,
// counted in the fetch budget until evicted: a reader keeping up with its fetches left most blocks
// there, and a cold read of 1 GiB fell to 4 to 8 requests in flight with 216 MiB of blocks already read
// held as "ready".
func TestReadaheadJoinedWhileStoringLeavesReady(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 4*testBS)
	opts := diskOptions(t, t.TempDir())
	opts.MinRequestSize, opts.MaxRequestSize = testBS, testBS
	c := newTestCache(t, src, opts)
	// Every disk writer slot taken: each fetched block's call stays registered while it waits to be stored.
	for range cap(c.disk.writers) {
		c.disk.writers <- struct{}{}
	}
	release := sync.OnceFunc(func() {
		for range cap(c.disk.writers) {
			<-c.disk.writers
		}
	})
	defer release()
	r := c.NewReader(obj, "")
	defer r.Close()
	inReady := func(idx int64) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, ok := c.ready[blockKey{obj.ID, idx}]
		return ok
	}
	p := make([]byte, testBS)
	if _, err := r.ReadAt(context.Background(), p, 0); err != nil { // block 0; read-ahead fetches block 1
		t.Fatal(err)
	}
	eventually(t, "block 1 read ahead, waiting to be stored", func() bool { return inReady(1) })
	if _, err := r.ReadAt(context.Background(), p, testBS); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, src.objects["obj"][testBS:2*testBS]) {
		t.Fatal("wrong bytes")
	}
	if inReady(1) {
		t.Fatal("block 1 was read but is still on the ready list, counted in the fetch budget")
	}
	release()
	settle(c)
}

// readFrom reads r sequentially from off to the end of the object in chunks of chunk bytes.
func readFrom(r *Reader, off, size int64, chunk int) error {
	p := make([]byte, chunk)
	for off < size {
		n, err := r.ReadAt(context.Background(), p, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no progress at %d", off)
		}
		off += int64(n)
	}
	return nil
}

// callsOf counts the calls registered for objectID (fetches in flight or completing).
func callsOf(c *Cache, objectID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k := range c.calls {
		if k.id == objectID {
			n++
		}
	}
	return n
}

// A Reader's read-ahead stays counted in the fetch budget from the moment it is admitted until a
// reader takes it: also between its Source call's return and its blocks reaching the ready list. Its
// bytes used to leave the budget first (fetch subtracted them, then complete added them to the ready
// list under a second hold of Cache.mu): another Reader's read-ahead admitted in that gap took the
// misses' headroom, and the next miss then dropped a live Reader's read-ahead, fetched a second time
// when that Reader got there. Under load the gap is wide, and TestConcurrentReadersKeepTheirReadahead
// failed with a block fetched twice; here a test hook holds a span in it.
func TestReadaheadCountedUntilReady(t *testing.T) {
	const nblocks = 96
	src := newFake()
	c := newReadaheadOnlyCache(t, src)
	a, b := src.add("a", nblocks*testBS), src.add("b", nblocks*testBS)
	other := src.add("c", testBS)
	ra := c.NewReader(a, "")
	defer ra.Close()
	held, release := make(chan *span, 16), make(chan struct{})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	c.fetched = func(sp *span) {
		if sp.owner != ra {
			return
		}
		select {
		case <-release: // a's later read-ahead goes through
		default: // a's first read-ahead: its only spans until release
			held <- sp
			<-release
		}
	}
	const chunk = 512 << 10 // a bulk read: 8 blocks, read-ahead starts at 8 blocks
	p := make([]byte, chunk)
	if _, err := ra.ReadAt(context.Background(), p, 0); err != nil {
		t.Fatal(err)
	}
	// a's read-ahead (blocks 8..15, two spans) has arrived and is held before its blocks are ready.
	var heldBlocks int
	for heldBlocks < 8 {
		heldBlocks += len((<-held).calls)
	}
	// b reads 2 MiB and plans its read-ahead up to EOF, as far as the budget admits it. Each read
	// waits for the read-ahead before it to arrive, so it plans with nothing of b's in flight.
	rb := c.NewReader(b, "")
	defer rb.Close()
	for off := int64(0); off < 4*chunk; off += chunk {
		eventually(t, "b's read-ahead fetched", func() bool { return callsOf(c, b.ID) == 0 })
		if _, err := rb.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "b's read-ahead fetched", func() bool { return callsOf(c, b.ID) == 0 })
	close(release)
	eventually(t, "a's read-ahead ready", func() bool { return callsOf(c, a.ID) == 0 })
	// One block missed by a third read: it fits in the misses' headroom unless read-ahead took it.
	if _, err := c.ReadAt(context.Background(), other, make([]byte, testBS), 0); err != nil {
		t.Fatal(err)
	}
	if err := readFrom(ra, chunk, a.Size, chunk); err != nil {
		t.Fatal(err)
	}
	if err := readFrom(rb, 4*chunk, b.Size, chunk); err != nil {
		t.Fatal(err)
	}
	settle(c)
	checkBlocksFetchedOnce(t, src, a, b)
	if s := c.Stats(); s.ReadaheadDropped != 0 {
		t.Errorf("read-ahead blocks dropped: %d", s.ReadaheadDropped)
	}
}

// fillReadahead has r read obj sequentially, 512 KiB at a time, for reads reads, each once the
// read-ahead before it has arrived: with the test budget (64 blocks, 8 left to misses) the reader is
// then at block 8*reads with its read-ahead planned up to EOF as far as the budget admits it.
func fillReadahead(t *testing.T, c *Cache, r *Reader, reads int) {
	t.Helper()
	p := make([]byte, 512<<10)
	for i := range reads {
		eventually(t, "read-ahead fetched", func() bool { return callsOf(c, r.obj.ID) == 0 })
		if _, err := r.ReadAt(context.Background(), p, int64(i)*int64(len(p))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "read-ahead fetched", func() bool { return callsOf(c, r.obj.ID) == 0 })
}

// Misses beyond the headroom that Readers' read-ahead leaves them wait for the misses in flight to end
// rather than drop a live Reader's unconsumed read-ahead, which that Reader would fetch again (a cp
// stalled and its bytes fetched twice, so that another cp's read went ahead a little sooner). Here one
// reader's read-ahead fills its share of the budget, and three misses of 4 blocks each arrive while
// the first two are in flight (8 blocks: the whole headroom).
func TestMissesWaitRatherThanDropReadahead(t *testing.T) {
	const nblocks = 96
	src := newFake()
	c := newReadaheadOnlyCache(t, src)
	a := src.add("a", nblocks*testBS)
	other := src.add("c", 12*testBS)
	ra := c.NewReader(a, "")
	defer ra.Close()
	fillReadahead(t, c, ra, 4)
	if s := c.Stats(); s.ReadaheadBytes != c.fetchBudget-c.raHeadroom {
		t.Fatalf("read-ahead held %d bytes, want the budget less the misses' headroom, %d", s.ReadaheadBytes, c.fetchBudget-c.raHeadroom)
	}

	gate := make(chan struct{})
	src.mu.Lock()
	src.gate = gate
	src.mu.Unlock()
	const miss = 4 * testBS
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for i := range 3 {
		wg.Go(func() {
			_, err := c.ReadAt(context.Background(), other, make([]byte, miss), int64(i)*miss)
			errs <- err
		})
	}
	// Two misses are at the Source; the third either waits for room or (the defect) dropped read-ahead
	// to make it and is at the Source too.
	eventually(t, "misses started or waiting for room", func() bool {
		n := len(src.blockFetches(other.ID, testBS)) / 4
		return n == 3 || n == 2 && c.Stats().RoomWaits == 1
	})
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := readFrom(ra, 4*512<<10, a.Size, 512<<10); err != nil {
		t.Fatal(err)
	}
	settle(c)
	checkBlocksFetchedOnce(t, src, a, other)
	if s := c.Stats(); s.ReadaheadDropped != 0 || s.RoomWaits != 0 {
		t.Errorf("read-ahead blocks dropped %d, fetches still waiting for room %d", s.ReadaheadDropped, s.RoomWaits)
	}
}

// A miss waiting for room ends: Close ends it (the read fails with ErrClosed and Close returns), and a
// reader whose context ends stops waiting at once while the fetch goes on for the tiers.
func TestMissWaitingForRoomEnds(t *testing.T) {
	for _, how := range []string{"close", "cancel"} {
		t.Run(how, func(t *testing.T) {
			src := newFake()
			c := newReadaheadOnlyCache(t, src)
			a := src.add("a", 96*testBS)
			other := src.add("c", 12*testBS)
			ra := c.NewReader(a, "")
			defer ra.Close()
			fillReadahead(t, c, ra, 4)
			gate := make(chan struct{})
			src.mu.Lock()
			src.gate = gate
			src.mu.Unlock()
			openGate := sync.OnceFunc(func() { close(gate) })
			defer openGate()

			const miss = 4 * testBS
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errs := make([]error, 3)
			var wg sync.WaitGroup
			for i := range 2 {
				wg.Go(func() { _, errs[i] = c.ReadAt(context.Background(), other, make([]byte, miss), int64(i)*miss) })
			}
			eventually(t, "two misses at the Source", func() bool { return len(src.blockFetches(other.ID, testBS)) == 8 })
			third := make(chan struct{})
			go func() {
				defer close(third)
				_, errs[2] = c.ReadAt(ctx, other, make([]byte, miss), 2*miss)
			}()
			eventually(t, "the third miss waiting for room", func() bool { return c.Stats().RoomWaits == 1 })

			switch how {
			case "close":
				closed := make(chan struct{})
				go func() { c.Close(); close(closed) }()
				<-third
				wg.Wait()
				<-closed
				for i, err := range errs {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("read %d: %v, want ErrClosed", i, err)
					}
				}
				if n := len(src.blockFetches(other.ID, testBS)); n != 8 {
					t.Errorf("%d blocks requested, want 8: the waiting miss went on after Close", n)
				}
			case "cancel":
				cancel()
				<-third // while the other two are still at the Source: it did not wait for room
				if !errors.Is(errs[2], context.Canceled) {
					t.Errorf("cancelled read: %v", errs[2])
				}
				openGate()
				wg.Wait()
				for i, err := range errs[:2] {
					if err != nil {
						t.Errorf("read %d: %v", i, err)
					}
				}
				settle(c) // the abandoned miss is fetched once there is room
				checkBlocksFetchedOnce(t, src, other)
				if s := c.Stats(); s.ReadaheadDropped != 0 || s.RoomWaits != 0 {
					t.Errorf("read-ahead blocks dropped %d, fetches waiting for room %d", s.ReadaheadDropped, s.RoomWaits)
				}
			}
		})
	}
}

// With no fetch in flight whose end would make room, a miss the budget has no room for does not wait
// for the Readers, which may never read again (this one stopped; or all of them wait on misses): it
// drops the oldest read-ahead, as much as it needs. That takes a miss larger than the misses' headroom
// (here 8 blocks, and 4 with Parallel 4).
func TestMissWithNothingInFlightDropsReadahead(t *testing.T) {
	src := newFake()
	opts := testOptions(t)
	opts.MemoryBytes = -1
	opts.Parallel = 4 // budget 32 blocks, 4 left to misses
	opts.Readahead = 4 << 20
	c := newTestCache(t, src, opts)
	a := src.add("a", 96*testBS)
	other := src.add("c", 8*testBS)
	ra := c.NewReader(a, "")
	defer ra.Close()
	fillReadahead(t, c, ra, 3)
	if s := c.Stats(); s.ReadaheadBytes != c.fetchBudget-c.raHeadroom {
		t.Fatalf("read-ahead held %d bytes, want %d", s.ReadaheadBytes, c.fetchBudget-c.raHeadroom)
	}
	if _, err := c.ReadAt(context.Background(), other, make([]byte, other.Size), 0); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.ReadaheadDropped != 4 || s.ReadaheadBytes != c.fetchBudget-c.raHeadroom-4*testBS {
		t.Errorf("read-ahead dropped %d blocks and holds %d bytes, want 4 dropped", s.ReadaheadDropped, s.ReadaheadBytes)
	}
}

// Four streaming copies, each with several reads in flight at once as the kernel sends them (a read
// lands up to two reads off where the stream ended): their misses together exceed the misses'
// headroom, yet none drops another's read-ahead, and every block is fetched exactly once.
func TestConcurrentReadersWithReadsInFlight(t *testing.T) {
	const readers, nblocks, inflight, chunk = 4, 96, 3, 128 << 10
	src := newFake()
	c := newReadaheadOnlyCache(t, src)
	var objs []Object
	for i := range readers {
		objs = append(objs, src.add(fmt.Sprintf("obj%d", i), nblocks*testBS))
	}
	var wg sync.WaitGroup
	errs := make(chan error, readers*inflight)
	for _, obj := range objs {
		r := c.NewReader(obj, "")
		defer r.Close()
		var next atomic.Int64 // the next chunk to read
		if _, err := r.ReadAt(context.Background(), make([]byte, chunk), 0); err != nil {
			t.Fatal(err)
		}
		next.Store(chunk) // the stream has begun: its later reads come concurrently
		for range inflight {
			wg.Go(func() {
				p := make([]byte, chunk)
				for {
					off := next.Add(chunk) - chunk
					if off >= obj.Size {
						return
					}
					n, err := r.ReadAt(context.Background(), p, off)
					if err == nil && !bytes.Equal(p[:n], src.objects[obj.ID][off:off+chunk]) {
						err = fmt.Errorf("%s at %d: wrong bytes", obj.ID, off)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkFetchedOnce(t, c, src, objs)
}

// A read's read-ahead is planned when the read starts and issued once its own blocks are claimed. The
// kernel sends a handle's reads concurrently, so a later read may meanwhile claim and read the first
// blocks of that plan; they must not then be read ahead again behind the reader (fetched, or loaded
// from disk, a second time to sit unread in the budget until Close). Here the first read waits in the
// disk tier while the second reads the block the first planned to read ahead.
func TestReadaheadNotBehindConcurrentReads(t *testing.T) {
	src := newFake()
	opts := diskOptions(t, t.TempDir())
	opts.Readahead = testBS // one block ahead
	c := newTestCache(t, src, opts)
	obj := src.add("obj", 8*testBS)
	if _, err := c.ReadAt(context.Background(), obj, make([]byte, obj.Size), 0); err != nil {
		t.Fatal(err) // every block on disk
	}
	settle(c)
	var gets atomic.Int32
	inGet, release := make(chan struct{}), make(chan struct{})
	c.disk.beforeRead = func(string) {
		if gets.Add(1) == 1 {
			close(inGet)
			<-release
		}
	}
	r := c.NewReader(obj, "")
	defer r.Close()
	first := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(context.Background(), make([]byte, testBS), 0) // plans block 1 ahead
		first <- err
	}()
	<-inGet
	if _, err := r.ReadAt(context.Background(), make([]byte, testBS), testBS); err != nil { // reads block 1
		t.Fatal(err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	settle(c)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.ready {
		if k.idx < 2 {
			t.Errorf("block %d read ahead after the reader read it", k.idx)
		}
	}
}

// checkFetchedOnce, once the readers of objs are done: every block of every object was fetched exactly
// once and no read-ahead was dropped unread.
func checkFetchedOnce(t *testing.T, c *Cache, src *fakeSource, objs []Object) {
	t.Helper()
	settle(c)
	var size int64
	for _, obj := range objs {
		size += obj.Size
	}
	checkBlocksFetchedOnce(t, src, objs...)
	if s := c.Stats(); s.ReadaheadDropped != 0 || s.BytesFetched != size {
		t.Errorf("read-ahead blocks dropped %d, bytes fetched %d of %d", s.ReadaheadDropped, s.BytesFetched, size)
	}
}

// newReadaheadOnlyCache is a cache over src with no memory tier (nothing to fall back on: a block
// dropped unread is fetched again, so the tests count it) and 4 MiB of read-ahead per reader (with the
// test block size, one reader's window alone is the whole fetch budget).
func newReadaheadOnlyCache(t *testing.T, src *fakeSource) *Cache {
	t.Helper()
	opts := testOptions(t)
	opts.MemoryBytes = -1
	opts.Readahead = 4 << 20
	return newTestCache(t, src, opts)
}

// checkBlocksFetchedOnce: no block of objs that went to the Source went more than once.
func checkBlocksFetchedOnce(t *testing.T, src *fakeSource, objs ...Object) {
	t.Helper()
	for _, obj := range objs {
		for idx, n := range src.blockFetches(obj.ID, testBS) {
			if n != 1 {
				t.Errorf("%s block %d fetched %d times", obj.ID, idx, n)
			}
		}
	}
}
