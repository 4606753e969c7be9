package cache

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Reader reads one object for one open file handle. It detects sequential
// access (a read starting where the previous one ended) and then reads ahead
// in the background: the window starts at one block (startWindowBlocks for a
// bulk read) and doubles on every sequential read up to Options.Readahead; any
// other offset (a seek) resets it, and such random reads fetch only the blocks
// they touch. The read itself waits only for its own blocks. Safe for
// concurrent use (the kernel may send several reads of one handle at once).
type Reader struct {
	c   *Cache
	obj Object
	v   *verifier // nil: no whole-file check
	// preverified: the object was verified earlier and every block is in the disk tier (each with
	// its own checksum), so it is not hashed again.
	preverified bool

	// mu protects next, window, raNext, largest, recent, recentAt, held, closed and failed.
	mu     sync.Mutex
	next   int64 // offset where the last read ended (in a stream: the furthest read's end)
	window int64 // read-ahead window in bytes; 0 = not sequential
	raNext int64 // first block not yet considered for read-ahead
	// largest is the longest read since the last seek: how far the stream's reads may arrive out
	// of order depends on how long they are (see reordered).
	largest int64
	// recent are the latest reads outside a stream, since the last seek out of one ([0] and [1]:
	// start and end; recentAt is the next slot to fill): the kernel sends a stream's first reads
	// concurrently too, so they arrive out of order, and these tell such a start (coveredToLocked).
	recent   [recentReads][2]int64
	recentAt int
	held     heldPair // the last two blocks read, so reads within them skip the tiers
	closed   bool
	failed   error // a whole-file mismatch this Reader saw: every later read fails with it

	// gone is set by Close: read-ahead left unconsumed may then be evicted for other readers'.
	gone atomic.Bool
	// readTo is the first block after the furthest read of the sequential stream (0: not
	// sequential), set with next. readahead reads it under Cache.mu: a plan issued after later
	// reads claimed (and maybe read) its first blocks skips them (see Reader.read's hook).
	readTo atomic.Int64
}

// NewReader returns a Reader of obj for one open file. If expectedSHA512 (hex)
// is not empty, the reader checks it once every block of the object has been
// read in order from the start (see ReadAt for how a mismatch is reported),
// unless the object matched it before and all its blocks are in the disk tier.
func (c *Cache) NewReader(obj Object, expectedSHA512 string) *Reader {
	r := &Reader{c: c, obj: obj}
	switch {
	case expectedSHA512 == "":
	case c.disk != nil && c.disk.verified(obj, c.bs, expectedSHA512):
		r.preverified = true
	default:
		r.v = newVerifier(obj, expectedSHA512, c.numBlocks(obj.Size), &c.st.hashed, c.hashSlack, func(idx int64) []byte {
			if r.gone.Load() {
				return nil
			}
			return c.atHand(obj, idx)
		})
	}
	return r
}

// ReadAt reads like Cache.ReadAt, plus read-ahead and verification.
//
// When the whole-file sha512 was given and the read completing the file
// reveals a mismatch, ReadAt returns the bytes read together with an error
// wrapping ErrChecksumMismatch; the object's cached blocks have then been
// dropped from every tier and the mismatch logged. Every later read of this
// Reader fails with the same error: the kernel retries a failed range, and
// that retry must not turn the failure into a successful copy of bytes that
// are not the file's. A new Reader (a new open) fetches afresh and is
// verified again.
func (r *Reader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b, err := r.read(ctx, p, off, false)
	return len(b), err
}

// ReadRef is ReadAt returning the bytes read: p[:n], or a sub-slice of a
// cached block when one block holds the whole range. The caller must not
// write to it; it spares a copy when the bytes are only handed on (as the
// FUSE reply is).
func (r *Reader) ReadRef(ctx context.Context, p []byte, off int64) ([]byte, error) {
	return r.read(ctx, p, off, true)
}

func (r *Reader) read(ctx context.Context, p []byte, off int64, ref bool) ([]byte, error) {
	c, size := r.c, r.obj.Size
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if r.failed != nil {
		r.mu.Unlock()
		return nil, r.failed
	}
	held := r.held
	var raFrom, raTo, reqBlk, readerAt int64
	if off >= 0 && off < size && len(p) > 0 {
		end := min(off+int64(len(p)), size)
		length := end - off
		if c.opts.Readahead > 0 && (off == r.next || r.window > 0 && reordered(off, r.next, max(length, r.largest)) ||
			r.window == 0 && off == r.coveredToLocked(r.next)) {
			r.largest = max(r.largest, length)
			to := max(end, r.next)
			if r.window == 0 {
				// A stream starts here: its reads so far may have arrived out of order, some
				// beyond this one. Read-ahead starts after them, not behind them.
				to = r.coveredToLocked(to)
			}
			raFrom, raTo, reqBlk = r.planLocked(to, int64(len(p)) >= bulkRead)
			readerAt = ceilDiv(end, c.bs)
			r.next = to
			r.readTo.Store(ceilDiv(r.next, c.bs))
		} else {
			if r.window > 0 { // a seek: the reads of the stream before are no start of a new one
				r.recentAt = 0
				clear(r.recent[:])
			}
			r.recent[r.recentAt] = [2]int64{off, end}
			r.recentAt = (r.recentAt + 1) % recentReads
			r.window, r.raNext = 0, 0
			r.largest = length
			r.next = end
			r.readTo.Store(0)
		}
	}
	r.mu.Unlock()

	var hook func()
	if raTo > raFrom {
		hook = func() {
			// The kernel sends a handle's reads concurrently: later reads may have passed the
			// start of this plan meanwhile, claiming those blocks as their own and maybe reading
			// them already. readahead skips them (readTo): with no tier to keep them, they would
			// be fetched a second time, to sit unread in the budget until Close.
			stop := c.readahead(r.obj, raFrom, raTo, reqBlk, r, readerAt)
			if stop < raTo {
				// The budget is full: plan the rest again on a later read, but not what reads
				// since have claimed.
				r.mu.Lock()
				r.raNext = max(min(r.raNext, stop), r.readTo.Load())
				r.mu.Unlock()
			}
		}
	}
	b, read, err := c.readAt(ctx, r.obj, p, off, held, hook, r.hold, ref)
	if err != nil && !errors.Is(err, io.EOF) {
		return b, err
	}
	r.hold(read)
	// A read served by a held block alone brings no block the verifier has not
	// seen (an empty object has none: its first read completes it).
	if r.v != nil && (len(read) > 0 || size == 0) {
		if verr := r.verify(read); verr != nil {
			return b, verr
		}
	}
	return b, err
}

// hold makes blocks a read brought the Reader's held ones. A read calls it as soon as its blocks at
// hand are claimed (taken off the ready list, found in the memory tier), before it waits for the
// rest, and again with all of them: the kernel's next read, sent meanwhile, then finds a block this
// one took off the ready list instead of loading it from the disk tier again.
func (r *Reader) hold(read []heldBlock) {
	if len(read) == 0 {
		return
	}
	r.mu.Lock()
	if !r.closed && r.failed == nil {
		r.held = r.held.after(read)
	}
	r.mu.Unlock()
}

// A sequential stream whose read is at least bulkRead (a streaming copy: the kernel's read-ahead turns
// cp's and cat's first 256 KiB read of a file into a 512 KiB request, and later ones into requests of
// up to 1 MiB, the largest FUSE read) starts its window at startWindowBlocks instead of
// one: the first read waits for its own block, and with a one-block window the rest of the read-ahead
// could only be planned after that block arrived, a whole request's time later. Smaller reads (a
// header sniffed, random access) start at one block, so they cost no more than before.
const (
	bulkRead          = 512 << 10
	startWindowBlocks = 8
)

// planLocked grows the window for a sequential read ending at end (bulk: see
// bulkRead) and returns the blocks [from, to) to read ahead now, in requests
// of reqBlk blocks.
// Read-ahead is issued in whole requests of at least MinRequestSize (or up to
// EOF), so a steady stream makes few large requests rather than one per block.
func (r *Reader) planLocked(end int64, bulk bool) (from, to, reqBlk int64) {
	c := r.c
	if r.window == 0 {
		r.window = min(c.bs, c.opts.Readahead)
		if bulk {
			r.window = min(startWindowBlocks*c.bs, c.opts.Readahead)
		}
	} else {
		r.window = min(2*r.window, c.opts.Readahead)
	}
	next := ceilDiv(end, c.bs) // first block after this read
	r.raNext = max(r.raNext, next)
	limit := ceilDiv(min(end+r.window, r.obj.Size), c.bs)
	gap := limit - r.raNext
	if gap <= 0 {
		return 0, 0, 0
	}
	// Spread a batch over the parallel slots, but never below
	// MinRequestSize: the platform counts requests, not bytes.
	reqBlk = min(max(ceilDiv(gap, int64(c.opts.Parallel)), c.minReqBlk), c.maxReqBlk)
	switch {
	case limit == c.numBlocks(r.obj.Size):
		// Up to EOF: all of it, the tail request may be short.
	case r.raNext == next:
		// Nothing read ahead of the reader (start, or it caught up): start
		// now rather than wait for a full request's worth.
	case gap >= reqBlk:
		limit = r.raNext + gap/reqBlk*reqBlk // whole requests only
	default:
		return 0, 0, 0
	}
	from, to = r.raNext, limit
	r.raNext = limit
	return from, to, reqBlk
}

// reordered reports whether a read at off, in a stream whose reads so far ended at next, is one of
// the stream's reads arriving out of order rather than a seek: the kernel sends a handle's reads (up
// to 1 MiB each: the application's own and its read-ahead) concurrently, so they arrive out of order,
// and that is not a seek. A cold cp was seen to send 0, 1, 3, 2 MiB: at 1 MiB the read at 2 MiB,
// 2 MiB behind the stream's end, reset the window and the stream started over from one block.
// Reads in flight together are a few at a time, so they land at most reorderReads reads of the
// stream's longest (length) from each other: small reads scattered further are random, even near a
// stream (a file sniffed in two adjacent reads, then read here and there, grew its window on every
// read when any read within maxReorder counted).
func reordered(off, next, length int64) bool {
	d := min(maxReorder, reorderReads*length)
	return off != next && off >= next-d && off <= next+d
}

// maxReorder bounds how far reordered reads may land (four 1 MiB reads in flight), and reorderReads
// is that in reads.
const (
	maxReorder   = 4 << 20
	reorderReads = 4
)

// recentReads is how many of the latest reads outside a stream coveredToLocked looks at: enough for
// the first reads of a stream the kernel has in flight at once (four 1 MiB reads were seen).
const recentReads = 8

// coveredToLocked returns where the bytes read contiguously from at on end: at itself, or the end of
// the recent reads (outside a stream) that, chained, cover at onwards. The kernel's concurrent reads
// make a stream's start arrive out of order, and the read ending where the last one began (1 MiB,
// then 0) moved next back behind the furthest read. So a stream starts where the reads so far cover
// up to (1 MiB, 0, then 2 MiB is the third read of a stream, not a seek), and its read-ahead starts
// after the furthest of them (2 MiB, 0, then 1 MiB plans from 3 MiB, not from 2 MiB: a block read
// already would be fetched again). A backward scan (tac) never reads where its reads cover up to, and
// random reads seldom chain, so neither looks like a stream.
func (r *Reader) coveredToLocked(at int64) int64 {
	for moved := true; moved; {
		moved = false
		for _, rd := range r.recent {
			if rd[0] <= at && at < rd[1] {
				at, moved = rd[1], true
			}
		}
	}
	return at
}

// Window returns the current read-ahead window in bytes (0 when not sequential).
func (r *Reader) Window() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.window
}

// Verified reports whether the whole-file sha512 has been checked and matched.
func (r *Reader) Verified() bool {
	if r.v == nil {
		return r.preverified
	}
	return r.v.matched()
}

// Close releases the reader's blocks. Read-ahead in flight finishes into the
// cache for whoever reads next.
func (r *Reader) Close() error {
	r.mu.Lock()
	r.closed = true
	r.gone.Store(true)
	r.held = heldPair{}
	r.mu.Unlock()
	// After r.mu (every lock is a leaf): fetches waiting for room may drop this Reader's read-ahead now.
	r.c.mu.Lock()
	r.c.roomFreedLocked()
	r.c.mu.Unlock()
	if r.v != nil {
		r.v.close()
	}
	return nil
}
