package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"
)

// call is one block's fetch, shared by every reader of that block
// (singleflight keyed by block). Blocks fetched by one ranged request (a span)
// each have their own call, so a reader waiting for any block of a span waits
// on that span's request.
type call struct {
	key  blockKey
	gen  uint64        // the object's Drop generation when the fetch started
	done chan struct{} // closed when data or err is set
	data []byte        // set before done is closed; never mutated afterwards
	err  error

	// waiters counts readers waiting on done; guarded by Cache.mu. A block
	// that completes with no waiter was read-ahead and goes to Cache.ready.
	waiters int
	// dropped is set (under Cache.mu) by Drop: the result is not stored.
	dropped bool
}

// span is one ranged Source request covering contiguous blocks of one object.
type span struct {
	obj       Object
	off       int64
	length    int64
	calls     []*call
	readahead bool
	// split, when above 1, is how many parts a Reader's read-ahead block it will want soon may come
	// in over idle slots, as a miss does (see readaheadSplit).
	split int
	// slot is set when the span's Parallel slot was taken as it was started, and extra counts the
	// spare slots taken with it for a split (see takeSlots).
	slot     bool
	extra    int
	fromDisk bool // the blocks were read from the disk tier: not written back
	// sums, when summed, are the CRC-32C of each block as the ChecksumSource computed them.
	sums   []uint32
	summed bool
	// owner is the Reader whose sequential read-ahead this is (nil: a reader's own blocks,
	// Prefetch). Its bytes were admitted into the fetch budget when it was planned (reserved in
	// inflightBytes), and its blocks, unconsumed, are not evicted for another reader's read-ahead.
	owner *Reader
	// counted is what the span holds in Cache.inflightBytes (its length once admitted, else 0).
	// complete gives it back under the same hold of Cache.mu in which the blocks join the ready list:
	// given back earlier, read-ahead admitted in between took the budget those blocks still use.
	counted int64
}

// request is what a read waits for: blocks already at hand plus calls.
type request struct {
	c     *Cache
	out   [][]byte
	waits []*call // waits[i] != nil: out[i] comes from that call
}

// claim finds blocks first..last of obj in the memory tier, joins fetches in
// flight and registers a call for each block still missing. Each call it
// registers is filled from the disk tier or else fetched (one span per run of
// contiguous missing blocks, capped at MaxRequestSize). It does not wait for
// fetches. A disk read runs as a call too, so the kernel's concurrent reads of
// one block share one disk read and one buffer instead of each allocating
// the block.
func (c *Cache) claim(obj Object, first, last int64, held heldPair) *request {
	n := last - first + 1
	r := &request{c: c, out: make([][]byte, n), waits: make([]*call, n)}
	todo := make([]bool, n)

	c.mu.Lock()
	gen := c.gens[obj.ID]
	for i := range n {
		if b := held.find(first + i); b != nil {
			r.out[i] = b.data
			continue
		}
		todo[i] = !c.joinLocked(blockKey{obj.ID, first + i}, r, i)
	}
	c.mu.Unlock()

	// ristretto is consulted without Cache.mu: it must not serialize readers.
	if c.mem != nil {
		for i := range n {
			if !todo[i] {
				continue
			}
			if d, ok := c.mem.get(c.memKey(obj, gen, first+i)); ok {
				r.out[i], todo[i] = d, false
				c.st.memHits.Add(1)
			}
		}
	}

	// Register the rest; another reader may have started some meanwhile.
	var created []*call
	c.mu.Lock()
	gen = c.gens[obj.ID]
	for i := range n {
		k := blockKey{obj.ID, first + i}
		if !todo[i] || c.joinLocked(k, r, i) {
			continue
		}
		cl := &call{key: k, gen: gen, done: make(chan struct{}), waiters: 1}
		c.calls[k] = cl
		r.waits[i] = cl
		created = append(created, cl)
	}
	c.mu.Unlock()

	// The disk tier, without Cache.mu; readers arriving meanwhile wait on the calls.
	missing := created[:0:0]
	var idx []int64
	for _, cl := range created {
		if c.disk != nil {
			if d := c.disk.get(obj, c.bs, cl.key.idx, c.blockLen(obj, cl.key.idx)); d != nil {
				c.st.diskHits.Add(1)
				c.complete(&span{obj: obj, calls: []*call{cl}, fromDisk: true}, [][]byte{d}, nil)
				continue
			}
		}
		c.st.misses.Add(1)
		missing = append(missing, cl)
		idx = append(idx, cl.key.idx)
	}
	c.startSpans(obj, missing, idx, false)
	return r
}

// joinLocked serves block k of request slot i from a fetch in flight (joining
// it) or from unconsumed read-ahead, and reports whether it did.
func (c *Cache) joinLocked(k blockKey, r *request, i int64) bool {
	if cl, ok := c.calls[k]; ok {
		cl.waiters++
		r.waits[i] = cl
		c.st.waitHits.Add(1)
		// A call stays registered while complete stores its blocks, after it put them on the ready
		// list (nobody waited then): this read consumes the block, so it leaves the list too.
		// Otherwise it stayed there, counted in the fetch budget until evicted: a reader keeping up
		// with the fetches left most blocks there, and the budget clogged with blocks already read.
		if e, ok := c.ready[k]; ok {
			c.removeReadyLocked(e)
		}
		return true
	}
	if e, ok := c.ready[k]; ok {
		r.out[i] = e.Value.(*readyBlock).data
		c.removeReadyLocked(e)
		c.st.raHits.Add(1)
		return true
	}
	return false
}

// atHand returns the request's blocks it has without waiting (first is the index of out[0]), up to
// the first it must wait for: the blocks a read can be said to hold before it waits.
func (r *request) atHand(first int64) []heldBlock {
	var got []heldBlock
	for i, d := range r.out {
		if r.waits[i] != nil {
			break
		}
		got = append(got, heldBlock{idx: first + int64(i), data: d})
	}
	return got
}

// wait waits for the request's calls. On ctx's end it stops waiting (the
// fetches go on for others) and returns ctx's error.
func (r *request) wait(ctx context.Context) ([][]byte, error) {
	var firstErr error
	for i, cl := range r.waits {
		if cl == nil {
			continue
		}
		if !r.c.waits.block(ctx, cl.done) {
			r.abandon(i)
			return nil, ctx.Err()
		}
		if cl.err != nil && firstErr == nil {
			firstErr = cl.err
		}
		r.out[i] = cl.data
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return r.out, nil
}

// atHand returns block idx of obj when a fetch has it at hand: unconsumed read-ahead, or a fetch
// completing (its data set, being stored in the tiers). It neither waits nor fetches, and leaves the
// block where it is for the reader: the whole-file hash pulls blocks this way (verifier.pullLocked).
func (c *Cache) atHand(obj Object, idx int64) []byte {
	k := blockKey{obj.ID, idx}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.ready[k]; ok {
		return e.Value.(*readyBlock).data
	}
	if cl, ok := c.calls[k]; ok {
		select {
		case <-cl.done:
			if cl.err == nil && !cl.dropped {
				return cl.data
			}
		default:
		}
	}
	return nil
}

// abandon gives up waiting on calls from index i on: a fetch that completes
// with no waiter left still lands in the tiers for the next reader.
func (r *request) abandon(from int) {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	for _, cl := range r.waits[from:] {
		if cl != nil {
			select {
			case <-cl.done:
			default:
				cl.waiters--
			}
		}
	}
}

// startSpans groups calls (with block indices idx, ascending) into runs of
// contiguous blocks of at most MaxRequestSize (readahead: at most reqBlk
// blocks) and starts one fetch per run.
func (c *Cache) startSpans(obj Object, calls []*call, idx []int64, readahead bool) {
	c.startSpansN(obj, calls, idx, readahead, c.maxReqBlk, nil, 0)
}

// startSpansN is startSpans with requests of reqBlk blocks; with an owner, the calls' bytes are
// already reserved in inflightBytes (see span.owner), and readerAt is the first block after the
// owner's read that planned them.
func (c *Cache) startSpansN(obj Object, calls []*call, idx []int64, readahead bool, reqBlk int64, owner *Reader, readerAt int64) {
	if len(calls) == 0 {
		return
	}
	// wg.Add must not race with Close's wg.Wait: both sides hold c.mu.
	c.mu.Lock()
	if c.shut {
		if owner != nil {
			c.unreserveLocked(obj, calls, true)
		}
		c.mu.Unlock()
		c.complete(&span{obj: obj, calls: calls}, nil, ErrClosed)
		return
	}
	c.wg.Add(1) // released below, once every span's goroutine holds its own
	c.mu.Unlock()
	defer c.wg.Done()
	for i := 0; i < len(calls); {
		j := i + 1
		for j < len(calls) && idx[j] == idx[j-1]+1 && int64(j-i) < reqBlk {
			j++
		}
		sp := &span{
			obj:       obj,
			off:       idx[i] * c.bs,
			calls:     calls[i:j:j],
			readahead: readahead,
			owner:     owner,
		}
		sp.length = min(obj.Size, (idx[j-1]+1)*c.bs) - sp.off
		if owner != nil {
			sp.counted = sp.length // reserved by readahead
		}
		if j-i == 1 && owner != nil {
			sp.split = c.readaheadSplit(idx[i] - readerAt)
		}
		c.takeSlots(sp)
		c.wg.Add(1)
		go c.fetch(sp)
		i = j
	}
}

// takeSlots takes, without waiting, sp's own Parallel slot and, for a block it may split, the spare
// ones, when they are idle. startSpansN starts spans in block order, nearest first, so the blocks a
// reader wants soonest get the idle slots: were they taken in the spans' goroutines, whichever the
// scheduler ran first would get them, and at a cold start the far read-ahead took the slots the near
// blocks were to be split over. A span that gets no slot here waits for one in fetch.
func (c *Cache) takeSlots(sp *span) {
	select {
	case c.sem <- struct{}{}:
		sp.slot = true
	default:
		return
	}
	if len(sp.calls) == 1 {
		sp.extra = c.spareSlots(sp)
	}
}

// fetch runs one span under the Cache's own context, so a reader that gives
// up does not cancel a fetch others wait on.
func (c *Cache) fetch(sp *span) {
	defer c.wg.Done()
	if !sp.slot && !c.acquire() {
		c.complete(sp, nil, ErrClosed) // gives back what a Reader's read-ahead reserved
		return
	}
	if sp.owner == nil {
		// Keep unconsumed read-ahead plus every request buffer in flight (a
		// reader's misses too, not only read-ahead) within one budget. A
		// Reader's read-ahead was admitted when planned and is counted already.
		c.mu.Lock()
		if !c.makeRoomLocked(sp.length) {
			c.mu.Unlock()
			c.releaseSlots(1 + sp.extra)
			c.complete(sp, nil, ErrClosed)
			return
		}
		c.inflightBytes += sp.length
		sp.counted = sp.length
		c.mu.Unlock()
	}
	c.startedCall()
	blocks := make([][]byte, len(sp.calls))
	for i, cl := range sp.calls {
		blocks[i] = make([]byte, c.blockLen(sp.obj, cl.key.idx))
	}
	if _, ok := c.src.(ChecksumSource); ok {
		sp.sums = make([]uint32, len(blocks))
	}
	err := c.readRange(sp, blocks)
	c.st.inFlight.Add(-1)
	if err != nil {
		c.st.fetchErrors.Add(1)
		blocks = nil
	}
	if c.fetched != nil {
		c.fetched(sp)
	}
	// The slot is kept while complete stores the blocks: a disk write waits for a writer rather
	// than being skipped, and meanwhile the blocks it pins count against Parallel like a request in
	// flight, so a disk slower than the network slows the fetches instead of growing memory.
	c.complete(sp, blocks, err)
	<-c.sem
}

// readRange calls the Source with bounded retries and backoff.
func (c *Cache) readRange(sp *span, blocks [][]byte) error {
	pol := c.opts.Retry
	delay := pol.Initial
	for attempt := 1; ; attempt++ {
		c.st.requests.Add(1)
		err := c.readOnce(sp, blocks)
		if err == nil {
			c.st.bytesFetched.Add(sp.length)
			return nil
		}
		err = fmt.Errorf("read %s [%d,%d): %w", sp.obj.ID, sp.off, sp.off+sp.length, err)
		if c.ctx.Err() != nil {
			return errors.Join(ErrClosed, err)
		}
		if attempt >= pol.Attempts || errors.Is(err, context.Canceled) ||
			errors.Is(err, context.DeadlineExceeded) ||
			(c.opts.Permanent != nil && c.opts.Permanent(err)) {
			return err
		}
		c.st.retries.Add(1)
		c.log.Debug("retrying ranged read", "attempt", attempt, "err", err)
		// Full jitter in [delay/2, delay): retries of many spans spread out.
		d := delay/2 + rand.N(delay/2+1)
		t := time.NewTimer(d)
		resume := c.waits.backoff(err)
		select {
		case <-t.C:
			resume()
		case <-c.ctx.Done():
			resume()
			t.Stop()
			return errors.Join(ErrClosed, err)
		}
		delay = min(2*delay, pol.Max)
	}
}

// readOnce makes one ranged request filling blocks. A VectorSource reads
// straight into the block buffers; otherwise a multi-block span is read into
// one buffer and copied out per block (a sub-slice would keep the whole span
// alive as long as any of its blocks is, and memory is accounted by block).
func (c *Cache) readOnce(sp *span, blocks [][]byte) error {
	sp.summed = false
	if len(blocks) == 1 {
		extra := sp.extra // taken when the span started; a retry takes what is idle then
		sp.extra = 0
		if extra == 0 {
			extra = c.spareSlots(sp)
		}
		if extra > 0 {
			defer c.releaseSlots(extra)
			return c.readSplit(sp, blocks[0], extra+1)
		}
	}
	if cs, ok := c.src.(ChecksumSource); ok && sp.sums != nil {
		err := c.timed(c.ctx, sp.length, func(ctx context.Context) error { return cs.ReadRangeVecSum(ctx, sp.obj.ID, sp.off, blocks, sp.sums) })
		sp.summed = err == nil
		return err
	}
	if len(blocks) == 1 {
		return c.timed(c.ctx, sp.length, func(ctx context.Context) error { return c.src.ReadRange(ctx, sp.obj.ID, sp.off, blocks[0]) })
	}
	if vs, ok := c.src.(VectorSource); ok {
		return c.timed(c.ctx, sp.length, func(ctx context.Context) error { return vs.ReadRangeVec(ctx, sp.obj.ID, sp.off, blocks) })
	}
	buf := make([]byte, sp.length)
	if err := c.timed(c.ctx, sp.length, func(ctx context.Context) error { return c.src.ReadRange(ctx, sp.obj.ID, sp.off, buf) }); err != nil {
		return err
	}
	for _, b := range blocks {
		buf = buf[copy(b, buf):]
	}
	return nil
}

// complete hands a span's result to its calls' waiters, then stores the
// blocks in the tiers. Calls stay registered while they are stored, so a
// reader arriving meanwhile gets the data at once instead of refetching (a
// ristretto Set is not visible immediately). It gives back the span's
// counted bytes, and its read-ahead blocks nobody waits for take their place.
func (c *Cache) complete(sp *span, blocks [][]byte, err error) {
	if blocks == nil {
		blocks = make([][]byte, len(sp.calls))
	}
	store := make([]bool, len(sp.calls))
	c.mu.Lock()
	if sp.counted > 0 {
		c.inflightBytes -= sp.counted
		if sp.owner != nil {
			c.raInflight -= sp.counted
		}
		c.roomFreedLocked()
	}
	for i, cl := range sp.calls {
		cl.data, cl.err = blocks[i], err
		close(cl.done)
		if err != nil {
			if c.calls[cl.key] == cl {
				delete(c.calls, cl.key)
			}
			continue
		}
		store[i] = !cl.dropped
		if !cl.dropped && cl.waiters == 0 && sp.readahead {
			e := c.readyList.PushBack(&readyBlock{key: cl.key, data: blocks[i], owner: sp.owner})
			c.ready[cl.key] = e
			c.readyBytes += int64(len(blocks[i]))
		}
	}
	c.mu.Unlock()
	if err != nil {
		return
	}
	if sp.owner != nil && sp.owner.v != nil {
		sp.owner.v.kick() // its Reader's hash may pull these blocks now
	}
	for i, cl := range sp.calls {
		if !store[i] {
			continue
		}
		if c.mem != nil {
			c.mem.set(c.memKey(sp.obj, cl.gen, cl.key.idx), blocks[i])
		}
		// Written even while Close runs (it waits for this): a block fetched is not thrown away, and
		// a read that returned just before an unmount leaves its file whole on disk.
		if c.disk != nil && !sp.fromDisk && !c.stale(cl) {
			var sum *uint32
			if sp.summed {
				sum = &sp.sums[i]
			}
			c.disk.put(sp.obj, c.bs, cl.key.idx, blocks[i], sum)
			// Drop bumps the generation before it clears the disk, so
			// either it saw our file or we see its generation now.
			if c.stale(cl) {
				c.disk.remove(sp.obj, c.bs, cl.key.idx)
			}
		}
	}
	if c.mem != nil {
		// Make the sets visible before the calls go: otherwise a reader
		// arriving now would miss both and fetch the block again.
		c.mem.wait()
	}
	c.mu.Lock()
	for _, cl := range sp.calls {
		if c.calls[cl.key] == cl {
			delete(c.calls, cl.key)
		}
	}
	c.mu.Unlock()
}

// stale reports whether cl's object was dropped since cl started.
func (c *Cache) stale(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gens[cl.key.id] != cl.gen
}

// evictReadyLocked drops unconsumed read-ahead, oldest first, until need more bytes fit within limit
// alongside the ready and in-flight bytes: with all, any block; else only abandoned ones (no live
// Reader waits for them: their Reader closed, or Prefetch's). It reports whether they fit.
func (c *Cache) evictReadyLocked(need, limit int64, all bool) bool {
	for e := c.readyList.Front(); e != nil && c.readyBytes+c.inflightBytes+need > limit; {
		next := e.Next()
		if rb := e.Value.(*readyBlock); all || rb.owner == nil || rb.owner.gone.Load() {
			c.removeReadyLocked(e)
			c.st.raDropped.Add(1)
		}
		e = next
	}
	return c.readyBytes+c.inflightBytes+need <= limit
}

// makeRoomLocked makes room in the fetch budget for need more bytes of a span no Reader's read-ahead
// admitted (a miss, Prefetch, a block the disk no longer had). Abandoned read-ahead goes first. Then,
// while fetches that give their bytes back soon are in flight (other misses; Readers' read-ahead
// leaves its headroom to them), it waits for them, as for a Parallel slot, rather than drop a live
// Reader's read-ahead: that Reader would fetch it again, and stall on it. With none in flight, only
// the Readers could make room, and they may not read again (one stopped, or all of them wait on
// misses): it drops the oldest read-ahead, as it always did. It reports false when the Cache is
// shutting down. The wait is on Cache.mu (room), so it adds no lock.
func (c *Cache) makeRoomLocked(need int64) bool {
	waiting := false
	for !c.shut && !c.evictReadyLocked(need, c.fetchBudget, false) && c.inflightBytes > c.raInflight {
		if !waiting {
			waiting = true
			c.waits.room.Add(1)
			defer c.waits.room.Add(-1)
		}
		c.roomWaiters++
		c.room.Wait()
		c.roomWaiters--
	}
	if c.shut {
		return false
	}
	c.evictReadyLocked(need, c.fetchBudget, true)
	return true
}

// roomFreedLocked wakes the fetches waiting for room: bytes left the budget (a fetch ended, a block
// was read or dropped), a Reader closed (its read-ahead may go), or the Cache is shutting down.
func (c *Cache) roomFreedLocked() {
	if c.roomWaiters > 0 {
		c.room.Broadcast()
	}
}

// admitReadaheadLocked reserves n bytes of a Reader's read-ahead in the fetch budget if they fit
// without evicting other live Readers' unconsumed read-ahead: with several sequential readers, the
// newest read-ahead used to evict the oldest, which its reader then fetched or read from disk again
// (and held twice meanwhile). It leaves raHeadroom for readers' own misses, and always admits when
// nothing else is held (progress).
func (c *Cache) admitReadaheadLocked(n int64) bool {
	if c.readyBytes+c.inflightBytes > 0 && !c.evictReadyLocked(n, c.fetchBudget-c.raHeadroom, false) {
		return false
	}
	c.inflightBytes += n
	c.raInflight += n
	return true
}

func (c *Cache) removeReadyLocked(e *list.Element) {
	rb := e.Value.(*readyBlock)
	c.readyList.Remove(e)
	delete(c.ready, rb.key)
	c.readyBytes -= int64(len(rb.data))
	c.roomFreedLocked()
}

// readahead starts background fetches of blocks [from, to) of obj that no
// tier holds and no fetch covers, as spans of about reqBlk blocks. For a
// Reader (owner not nil) it stops at the first block the fetch budget has no
// room for and returns its index (to when all went), for the Reader to plan
// again from there on its next read.
func (c *Cache) readahead(obj Object, from, to, reqBlk int64, owner *Reader, readerAt int64) int64 {
	if from >= to || c.closed.Load() {
		return to
	}
	missing, inDisk := make([]bool, to-from), make([]bool, to-from)
	c.mu.Lock()
	gen := c.gens[obj.ID]
	for i := from; i < to; i++ {
		k := blockKey{obj.ID, i}
		_, inCall := c.calls[k]
		_, isReady := c.ready[k]
		missing[i-from] = !inCall && !isReady
	}
	c.mu.Unlock()
	for i := from; i < to; i++ {
		if !missing[i-from] {
			continue
		}
		// A peek: a ristretto Get counts towards admission, which is right
		// for a block about to be read anyway.
		if c.mem != nil {
			if _, ok := c.mem.get(c.memKey(obj, gen, i)); ok {
				missing[i-from] = false
				continue
			}
		}
		// Looked up here, not under Cache.mu (the disk tier's lock is not nested in it).
		inDisk[i-from] = c.disk != nil && c.disk.has(obj, c.bs, i)
	}
	var created, onDisk []*call
	var idx []int64
	stop := to
	c.mu.Lock()
	gen = c.gens[obj.ID]
	// A Reader's reads since the plan may have claimed its first blocks (read under Cache.mu: a
	// read that claimed them had set readTo before).
	behind := int64(0)
	if owner != nil {
		behind = owner.readTo.Load()
	}
	for i := from; i < to; i++ {
		if !missing[i-from] || i < behind {
			continue
		}
		k := blockKey{obj.ID, i}
		if _, ok := c.calls[k]; ok {
			continue
		}
		if _, ok := c.ready[k]; ok {
			continue
		}
		if inDisk[i-from] {
			// Loaded ahead only within the budget (and counted in it while
			// loading): a block evicted from read-ahead is not worth
			// evicting another for. Otherwise the reader reads it itself.
			n := c.blockLen(obj, i)
			if c.readyBytes+c.inflightBytes+n > c.fetchBudget {
				continue
			}
			c.inflightBytes += n
			cl := &call{key: k, gen: gen, done: make(chan struct{})}
			c.calls[k] = cl
			onDisk = append(onDisk, cl)
			continue
		}
		if owner != nil && !c.admitReadaheadLocked(c.blockLen(obj, i)) {
			stop = i
			break
		}
		cl := &call{key: k, gen: gen, done: make(chan struct{})}
		c.calls[k] = cl
		created = append(created, cl)
		idx = append(idx, i)
	}
	c.mu.Unlock()
	c.startDiskLoads(obj, onDisk)
	c.startSpansN(obj, created, idx, true, reqBlk, owner, readerAt)
	return stop
}

// unreserveLocked gives back the fetch budget readahead reserved for calls (in inflightBytes; owned:
// a Reader's read-ahead, also in raInflight) when they will not be started.
func (c *Cache) unreserveLocked(obj Object, calls []*call, owned bool) {
	for _, cl := range calls {
		n := c.blockLen(obj, cl.key.idx)
		c.inflightBytes -= n
		if owned {
			c.raInflight -= n
		}
	}
	c.roomFreedLocked()
}

// startDiskLoads reads blocks of a sequential reader ahead from the disk tier, so a re-read from disk
// streams (the disk is read while the reader consumes earlier blocks) instead of waiting for each block
// in turn. A block the disk no longer has (evicted, corrupt) is fetched instead.
func (c *Cache) startDiskLoads(obj Object, calls []*call) {
	if len(calls) == 0 {
		return
	}
	c.mu.Lock()
	if c.shut {
		c.unreserveLocked(obj, calls, false)
		c.mu.Unlock()
		c.complete(&span{obj: obj, calls: calls}, nil, ErrClosed)
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		for _, cl := range calls {
			c.loadFromDisk(obj, cl)
		}
	}()
}

// loadFromDisk completes cl, whose block length readahead added to inflightBytes, from the disk tier.
func (c *Cache) loadFromDisk(obj Object, cl *call) {
	n := c.blockLen(obj, cl.key.idx)
	defer func() {
		c.mu.Lock()
		c.inflightBytes -= n
		c.roomFreedLocked()
		c.mu.Unlock()
	}()
	if c.closed.Load() {
		c.complete(&span{obj: obj, calls: []*call{cl}}, nil, ErrClosed)
		return
	}
	if d := c.disk.get(obj, c.bs, cl.key.idx, n); d != nil {
		c.st.diskHits.Add(1)
		c.complete(&span{obj: obj, calls: []*call{cl}, readahead: true, fromDisk: true}, [][]byte{d}, nil)
		return
	}
	c.startSpansN(obj, []*call{cl}, []int64{cl.key.idx}, true, 1, nil, 0)
}

// readaheadSplit is how many parts a Reader's read-ahead block d blocks past its read may be split
// into (over idle slots only, see spareSlots). A whole block over one connection takes its full
// transfer time (8 MiB at 25 MiB/s: a third of a second), while a reader streaming at a few hundred
// MiB/s reaches the next blocks within tens of milliseconds: when read-ahead starts right by the reader
// (a cold start, or a reader that caught up), the nearest blocks fetched whole arrive together long
// after it wants them, and it stalls. Split, they arrive in order and sooner: the next nearSplitBlocks
// blocks in as many parts as a miss, the ones after in two. In a steady stream the slots are busy and
// the planned blocks far ahead, so this costs no extra requests there.
//
// On a fast link (fastLink) the rings are twice as wide. A cold stream's second plan, made as the
// first blocks arrive, reaches 8 to 15 blocks past the reader: fetched whole they all arrived a whole
// block's transfer time later, together, and the reader, done with the first ring, waited for them
// (a cold 512 MiB cp at 25 MiB/s per connection stalled about 200 ms there). On a slow link the slots
// already limit the stream and each part costs a request's latency of slot time: there the wider
// split made the same copy at 10 MiB/s per connection 5% slower, so it stays narrow.
func (c *Cache) readaheadSplit(d int64) int {
	near := int64(nearSplitBlocks)
	if c.fastLink() {
		near *= 2
	}
	switch {
	case d < near:
		return maxSplit
	case d < 2*near:
		return 2
	}
	return 1
}

const (
	nearSplitBlocks = 4
	maxSplit        = 1 << 10 // as many as SplitMisses allows
)

// fastLinkRate is what the Parallel slots together must carry, at the rate one call was timed at,
// for the link to count as fast: about what one reader takes through the mount (a cold cp here is
// bound by CPU at 400 to 500 MiB/s). Timed from their first byte, 2 MiB parts came at 23 to 24 MiB/s
// over 25 MiB/s connections at a cold start (32 slots: 740 MiB/s), at 9 over 10 MiB/s ones (290).
const fastLinkRate = 448 << 20

// fastLink reports whether the Parallel slots together, at the rate a Source call delivers lately,
// carry about what one reader takes or more: then slots are to spare for splitting, and what matters
// is that blocks arrive in the order the reader wants them. Unknown (no call yet) is not fast.
func (c *Cache) fastLink() bool {
	r := c.callRate.Load()
	return r > 0 && int64(c.opts.Parallel)*r >= fastLinkRate
}

// timed makes one Source call of n bytes with ctx and, when it succeeds and n is at least
// minSplitPart (a smaller call says little of the link), folds its rate into callRate. The rate is
// taken from the response's first byte when the Source speaks HTTP (httptrace, through ctx), so it is
// the link's and not the request's latency: a 2 MiB part at 20 ms and 25 MiB/s takes 100 ms, a fifth
// of it latency, and a cold start's first calls also wait for the CPU they share. Otherwise it is
// timed from the call's start.
func (c *Cache) timed(ctx context.Context, n int64, call func(ctx context.Context) error) error {
	if n < minSplitPart {
		return call(ctx)
	}
	start := time.Now()
	// When the first response byte came, as nanoseconds since start plus one (0: none seen); the
	// monotonic clock, as the rest of the timing.
	var firstByte atomic.Int64
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotFirstResponseByte: func() {
		firstByte.CompareAndSwap(0, int64(time.Since(start))+1)
	}})
	err := call(ctx)
	if err != nil {
		return err
	}
	d := time.Since(start)
	if f := firstByte.Load(); f != 0 {
		d -= time.Duration(f - 1)
	}
	d = max(d, time.Microsecond)
	rate := int64(float64(n) / d.Seconds())
	// A moving average over about four calls; concurrent calls may each overwrite the other's
	// update, which only drops a sample.
	if old := c.callRate.Load(); old > 0 {
		rate = old + (rate-old)/4
	}
	c.callRate.Store(rate)
	return nil
}

// minSplitPart is the smallest part a miss is split into: below it a request's latency outweighs
// its transfer time.
const minSplitPart = 1 << 20

// spareSlots takes, without waiting, up to SplitMisses-1 Parallel slots beyond sp's own for a block a
// reader is waiting for, or for a Reader's read-ahead block near its reads (up to sp.split parts, see
// readaheadSplit), and returns how many it got (release them with releaseSlots). Only idle slots are
// taken, so splitting never delays another fetch: it shortens the first read of a cold file, the
// blocks right after it, and a random read, which otherwise wait for a whole block over one
// connection.
func (c *Cache) spareSlots(sp *span) int {
	parts := c.opts.SplitMisses
	if sp.readahead || sp.owner != nil {
		parts = min(parts, sp.split) // read-ahead: only near a Reader
	}
	if parts < 2 {
		return 0
	}
	if ss, ok := c.src.(SplitSource); ok && !ss.Splittable(sp.obj.ID) {
		return 0
	}
	want := min(parts-1, int(sp.length/minSplitPart)-1)
	got := 0
	for got < want {
		select {
		case c.sem <- struct{}{}:
			got++
		default:
			return got
		}
	}
	return got
}

func (c *Cache) releaseSlots(n int) {
	for range n {
		<-c.sem
	}
}

// readSplit fills block, the whole of sp, with parts concurrent Source calls of about equal size
// (whole 64 KiB units). The first failure cancels the others and fails the whole: readRange retries
// the whole block (split again if slots are idle then), so no part of a failed attempt is served.
func (c *Cache) readSplit(sp *span, block []byte, parts int) error {
	const unit = 64 << 10
	size := int64(len(block))
	step := ceilDiv(ceilDiv(size, int64(parts)), unit) * unit
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for from := int64(0); from < size; from += step {
		part := block[from:min(from+step, size)]
		if from > 0 {
			c.st.requests.Add(1) // readRange counts the first
			c.startedCall()
		}
		wg.Go(func() {
			if from > 0 {
				defer c.st.inFlight.Add(-1)
			}
			if err := c.timed(ctx, int64(len(part)), func(ctx context.Context) error { return c.src.ReadRange(ctx, sp.obj.ID, sp.off+from, part) }); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		})
	}
	wg.Wait()
	return firstErr
}

// startedCall counts a Source call in flight (and the most ever).
func (c *Cache) startedCall() {
	n := c.st.inFlight.Add(1)
	for {
		m := c.st.maxInFlight.Load()
		if n <= m || c.st.maxInFlight.CompareAndSwap(m, n) {
			return
		}
	}
}
