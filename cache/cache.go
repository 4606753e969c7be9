// Package cache is rescalefs's block cache: immutable remote objects are read in
// fixed-size blocks through a memory tier (ristretto), a disk tier (compressed,
// checksummed files) and one fetcher per mount that merges duplicate requests,
// bounds parallelism and fetches sequential read-ahead as a few large ranged
// requests. It knows nothing of FUSE or HTTP: it reads through Source.
//
// # Lock order
//
// Only one chain nests:
//
//	diskTier.life (read) -> diskTier.mu
//
// Every other lock is a leaf, never held while taking another: Reader.mu is
// released before the Reader calls into the Cache; Cache.mu is released before
// any Source call, disk-tier call or ristretto call; verifier.mu is taken on
// its own; ristretto's internal locks are leaves. Cache.room is a condition on
// Cache.mu (a fetch waiting for room in the fetch budget releases Cache.mu
// while it waits), not another lock; Reader.readTo is an atomic that readahead
// reads under Cache.mu instead of taking Reader.mu there.
//
// # Memory bound
//
// Memory used for block data is bounded by
//
//	MemoryBytes                              ristretto (cost = block length)
//	+ Parallel * MaxRequestSize (x2 briefly)  request buffers in flight together
//	                                          with read-ahead blocks not yet
//	                                          consumed (the fetch budget: a
//	                                          miss that finds it full waits for
//	                                          the misses in flight to end, or
//	                                          with none, drops the oldest
//	                                          read-ahead) (x2: a multi-block
//	                                          response of a plain Source is
//	                                          copied into per-block buffers; a
//	                                          VectorSource fills them). A fetch
//	                                          keeps its Parallel slot until its
//	                                          blocks are on disk, so blocks
//	                                          waiting for the disk count here.
//	+ two blocks per open Reader              the last two it read (a verifying
//	                                          Reader may hold up to maxPending
//	                                          more while reads arrive out of order)
//	+ hashSlackBytes                          blocks queued for the whole-file
//	                                          hash beyond each Reader's first, or
//	                                          pulled by it ahead of the reads,
//	                                          shared by all Readers
//
// whatever the file sizes. Buffers handed out are never mutated or recycled:
// the garbage collector frees a block once neither a tier nor a reader holds it.
package cache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Source reads byte ranges of immutable remote objects. remote.Client satisfies it.
type Source interface {
	// ReadRange fills p with exactly len(p) bytes of object objectID starting at
	// off, or returns an error.
	ReadRange(ctx context.Context, objectID string, off int64, p []byte) error
}

// VectorSource is an optional extension of Source: ReadRangeVec makes one
// ranged request for the contiguous bytes starting at off and fills bufs in
// order (e.g. io.ReadFull of the body into each). A multi-block request then
// lands directly in the block buffers instead of being copied out of one big
// buffer: a memcpy less per byte.
type VectorSource interface {
	ReadRangeVec(ctx context.Context, objectID string, off int64, bufs [][]byte) error
}

// ChecksumSource is an optional extension of VectorSource: ReadRangeVecSum also sets sums[i] to the
// CRC-32C (Castagnoli) of bufs[i], computed while the bytes land. The disk tier keeps that checksum
// with each block; computed here, it is a second pass over a block read back from memory, several
// times the cost of the same work on bytes still in the CPU's cache.
type ChecksumSource interface {
	ReadRangeVecSum(ctx context.Context, objectID string, off int64, bufs [][]byte, sums []uint32) error
}

// SplitSource is an optional extension of Source: Splittable reports whether a block of objectID may
// be fetched as several concurrent requests (Options.SplitMisses). A source whose requests for some
// objects count against a limit says no for those.
type SplitSource interface {
	Splittable(objectID string) bool
}

// Object is an immutable remote object: the same ID always has the same bytes
// and Size, so its blocks can be cached forever.
type Object struct {
	ID   string
	Size int64
}

// RetryPolicy bounds the retries of one ranged request.
type RetryPolicy struct {
	Attempts int           // total attempts including the first; default 5
	Initial  time.Duration // first backoff; default 200ms; doubled per retry, with jitter
	Max      time.Duration // backoff cap; default 5s
}

// Options configure a Cache. Zero values take the documented defaults.
type Options struct {
	// BlockSize is the fixed block size; default 8 MiB. Changing it changes the
	// keys, so blocks cached with another size are simply not found.
	BlockSize int64
	// MemoryBytes bounds the memory tier; default 256 MiB; negative disables it.
	MemoryBytes int64
	// DiskDir is the disk tier's directory (created 0700); "" disables the tier.
	DiskDir string
	// DiskBytes bounds the disk tier (bytes of cache files); default 10 GiB.
	DiskBytes int64
	// Parallel bounds Source calls in flight across the whole Cache; default 16.
	Parallel int
	// Readahead is the largest sequential read-ahead window; default 64 MiB;
	// negative disables read-ahead.
	Readahead int64
	// MaxRequestSize caps one Source call (a span of contiguous blocks);
	// default 64 MiB, at least one block.
	MaxRequestSize int64
	// MinRequestSize is the smallest read-ahead request while the file has
	// that much left; default 16 MiB (rounded up to whole blocks). Platforms
	// limit requests per second, not bytes, so one stream's request rate is
	// about throughput/MinRequestSize: at 400 MiB/s and 16 MiB that is 25/s.
	MinRequestSize int64
	// SplitMisses, when above 1, lets a block a reader waits for be fetched as up to that many
	// concurrent ranged requests, using Parallel slots that are idle at the time (see
	// Cache.spareSlots). For Sources whose requests are not counted against a limit (storage).
	SplitMisses int
	// Retry bounds retries of a failed Source call.
	Retry RetryPolicy
	// Permanent reports errors that must not be retried (e.g. not found).
	// Context errors are never retried. nil: everything else is retried.
	Permanent func(error) bool
	// Logger receives warnings (disk problems, corrupt blocks, checksum
	// mismatches); nil discards.
	Logger *slog.Logger
}

// Stats is a snapshot of the cache's counters.
type Stats struct {
	MemoryHits         int64 // blocks served from the memory tier
	ReadaheadHits      int64 // blocks served from read-ahead not yet in a tier
	DiskHits           int64 // blocks served from the disk tier
	WaitHits           int64 // blocks that joined a fetch already in flight
	Misses             int64 // blocks that started a fetch for a reader
	Requests           int64 // Source calls, retries included
	Retries            int64 // Source calls that were retries
	FetchErrors        int64 // fetches that failed after retries
	BytesFetched       int64 // bytes returned by successful Source calls
	InFlight           int64 // Source calls in flight now
	MaxInFlight        int64 // most Source calls ever in flight at once
	ReadaheadBytes     int64 // read-ahead bytes held in memory, not yet consumed
	ReadaheadDropped   int64 // read-ahead blocks dropped from memory before anyone read them
	MemoryBytes        int64 // bytes in the memory tier
	DiskBytes          int64 // bytes of cache files in the disk tier
	DiskBlocks         int64 // cache files in the disk tier
	DiskCorrupt        int64 // cache files found corrupt (deleted and refetched)
	DiskErrors         int64 // disk writes that failed, or were skipped for room held by stuck files (the block was served uncached)
	DiskStuckFiles     int64 // cache files the disk tier failed to delete (EPERM, EROFS): still on disk, in DiskBytes; retried
	DiskStuckBytes     int64 // the bytes of those files
	ChecksumMismatches int64 // whole-file sha512 mismatches
	HashedBytes        int64 // bytes fed to whole-file sha512s

	// What reads wait on now (waits.go): readers blocked on a fetch; of the fetches, those waiting
	// for a Parallel slot (the others in flight are InFlight), those waiting for room in the fetch
	// budget (misses beyond the headroom Readers' read-ahead leaves them, waiting for other misses
	// to end rather than drop a Reader's read-ahead) and those backing off after a failed Source
	// call, with what the latest one failed with.
	ReadsWaiting int64
	SlotWaits    int64
	RoomWaits    int64
	RetryWaits   int64
	RetryError   string
}

// ErrClosed is returned by reads after Close.
var ErrClosed = errors.New("cache: closed")

// Cache is one mount's block cache and fetcher. It is safe for concurrent use.
type Cache struct {
	src  Source
	opts Options
	log  *slog.Logger
	mem  *memTier  // nil when disabled
	disk *diskTier // nil when disabled or unusable

	bs          int64           // block size
	maxReqBlk   int64           // MaxRequestSize in blocks
	minReqBlk   int64           // MinRequestSize in blocks
	fetchBudget int64           // bytes: request buffers in flight + unconsumed read-ahead blocks
	raHeadroom  int64           // part of fetchBudget that Readers' read-ahead leaves to their misses
	ctx         context.Context // the fetcher's own context: fetches outlive readers
	cancel      context.CancelFunc
	sem         chan struct{} // Parallel slots for Source calls
	hashSlack   hashSlack     // blocks queued for the whole-file hash beyond each Reader's first, or pulled ahead of it
	wg          sync.WaitGroup
	closed      atomic.Bool
	// fetched, when a test sets it, runs in a span's goroutine once its Source call has returned and
	// before its result is handed on (complete): tests hold a fetch there.
	fetched func(sp *span)
	// callRate is what one Source call of at least minSplitPart delivered lately, in bytes per second
	// from its first byte to its end (see timed): a moving average, 0 until the first. It tells a link
	// with room to spare from one the slots already fill (see fastLink).
	callRate atomic.Int64

	// mu protects shut, calls, ready, readyList, readyBytes, inflightBytes, raInflight, roomWaiters
	// and gens.
	mu   sync.Mutex
	shut bool // Close has begun: no new fetch goroutines (wg.Add) after this
	// calls holds every block whose fetch is in flight or completing (data
	// set, being stored in the tiers); a reader joins instead of refetching.
	calls map[blockKey]*call
	// ready holds read-ahead blocks nobody waited for, until a reader takes
	// them, oldest first in readyList. ristretto may drop or reject a Set, and
	// this keeps read-ahead from being fetched twice.
	ready         map[blockKey]*list.Element // value *readyBlock
	readyList     *list.List
	readyBytes    int64
	inflightBytes int64 // bytes of request buffers in flight (read-ahead or not)
	// raInflight is the part of inflightBytes that Readers' read-ahead reserved: those bytes do not
	// free room when their fetch ends (they move to the ready list). The rest does, soon: misses,
	// Prefetch and disk loads in flight, which a fetch waiting for room waits for (makeRoomLocked).
	raInflight int64
	// room is signalled (on mu) when the fetch budget may have room again, for fetches waiting in
	// makeRoomLocked; roomWaiters counts them, so nothing is signalled when nobody waits.
	room        *sync.Cond
	roomWaiters int
	// gens counts Drops per object; memory keys include it, so blocks of a
	// dropped object (ristretto cannot enumerate keys) become unreachable.
	gens map[string]uint64

	st    counters
	waits waits // what reads wait on now, for status (waits.go)
}

type counters struct {
	memHits, raHits, diskHits, waitHits, misses  atomic.Int64
	requests, retries, fetchErrors, bytesFetched atomic.Int64
	inFlight, maxInFlight                        atomic.Int64
	mismatches, hashed, raDropped                atomic.Int64
}

const (
	defaultBlockSize      = 8 << 20
	defaultMemoryBytes    = 256 << 20
	defaultDiskBytes      = 10 << 30
	defaultParallel       = 16
	defaultReadahead      = 64 << 20
	defaultMaxRequestSize = 64 << 20
	defaultMinRequestSize = 16 << 20
)

func (o *Options) setDefaults() {
	if o.BlockSize <= 0 {
		o.BlockSize = defaultBlockSize
	}
	if o.MemoryBytes == 0 {
		o.MemoryBytes = defaultMemoryBytes
	}
	if o.DiskBytes <= 0 {
		o.DiskBytes = defaultDiskBytes
	}
	if o.Parallel <= 0 {
		o.Parallel = defaultParallel
	}
	if o.Readahead == 0 {
		o.Readahead = defaultReadahead
	}
	if o.MaxRequestSize <= 0 {
		o.MaxRequestSize = defaultMaxRequestSize
	}
	if o.MinRequestSize <= 0 {
		o.MinRequestSize = defaultMinRequestSize
	}
	if o.Retry.Attempts <= 0 {
		o.Retry.Attempts = 5
	}
	if o.Retry.Initial <= 0 {
		o.Retry.Initial = 200 * time.Millisecond
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// New returns a Cache reading through src. A disk tier that cannot be used
// (DiskDir unwritable, not a directory) is logged and disabled, not an error:
// reads must go on uncached.
func New(src Source, opts Options) (*Cache, error) {
	if src == nil {
		return nil, errors.New("cache: nil Source")
	}
	opts.setDefaults()
	c := &Cache{
		src:       src,
		opts:      opts,
		log:       opts.Logger,
		bs:        opts.BlockSize,
		maxReqBlk: max(1, opts.MaxRequestSize/opts.BlockSize),
		calls:     make(map[blockKey]*call),
		ready:     make(map[blockKey]*list.Element),
		readyList: list.New(),
		gens:      make(map[string]uint64),
		sem:       make(chan struct{}, opts.Parallel),
		hashSlack: newHashSlack(opts.BlockSize),
	}
	c.room = sync.NewCond(&c.mu)
	c.minReqBlk = min(c.maxReqBlk, max(1, ceilDiv(opts.MinRequestSize, c.bs)))
	c.fetchBudget = int64(opts.Parallel) * c.maxReqBlk * c.bs
	c.raHeadroom = max(c.bs, c.fetchBudget/8)
	if opts.MemoryBytes > 0 {
		m, err := newMemTier(opts.MemoryBytes, c.bs)
		if err != nil {
			return nil, fmt.Errorf("cache: memory tier: %w", err)
		}
		c.mem = m
	}
	if opts.DiskDir != "" {
		d, err := openDisk(opts.DiskDir, opts.DiskBytes, c.log)
		if err != nil {
			c.log.Warn("disk cache unusable, serving without it", "dir", opts.DiskDir, "err", err)
		} else {
			c.disk = d
		}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// BlockSize returns the block size in use.
func (c *Cache) BlockSize() int64 { return c.bs }

// ReadAt reads len(p) bytes of obj at off with io.ReaderAt semantics at EOF
// (n < len(p) only with io.EOF). It fetches only the blocks it touches: no
// read-ahead. ctx bounds only this caller's wait: a fetch it started goes on
// for other waiters. On a fetch error no bytes are returned.
func (c *Cache) ReadAt(ctx context.Context, obj Object, p []byte, off int64) (int, error) {
	b, _, err := c.readAt(ctx, obj, p, off, heldPair{}, nil, nil, false)
	return len(b), err
}

// readAt is ReadAt with the blocks a reader holds (held, may be empty), an
// optional hook run after the read's own blocks are claimed and before
// waiting for them (read-ahead is issued there, so it queues behind them), and
// an optional atHand, given the claimed blocks already at hand then, in order. It
// returns the blocks read, for the reader's bookkeeping: none when a held block
// alone served the read (the reader has seen that block already).
//
// It returns the bytes read: p[:n], or with ref a sub-slice of the one cached
// block holding the whole range (never to be written to), which spares a copy
// when the caller only hands the bytes on (a FUSE reply).
func (c *Cache) readAt(ctx context.Context, obj Object, p []byte, off int64, held heldPair, hook func(), atHand func([]heldBlock), ref bool) ([]byte, []heldBlock, error) {
	if c.closed.Load() {
		return nil, nil, ErrClosed
	}
	if off < 0 {
		return nil, nil, fmt.Errorf("cache: read %s at negative offset %d", obj.ID, off)
	}
	if off >= obj.Size || len(p) == 0 {
		if hook != nil {
			hook()
		}
		if off >= obj.Size {
			return nil, nil, io.EOF
		}
		return nil, nil, nil
	}
	end := min(off+int64(len(p)), obj.Size)
	first, last := off/c.bs, (end-1)/c.bs
	if b := held.find(first); b != nil && first == last {
		// Most kernel reads (128 KiB to 1 MiB) fall inside a block the reader
		// holds: no Cache.mu, no tier lookups, no allocation.
		if hook != nil {
			hook()
		}
		return c.out(p, off, end, first, [][]byte{b.data}, ref), nil, eofIf(end-off < int64(len(p)))
	}
	req := c.claim(obj, first, last, held)
	if atHand != nil {
		if got := req.atHand(first); len(got) > 0 {
			atHand(got)
		}
	}
	if hook != nil {
		hook()
	}
	blocks, err := req.wait(ctx)
	if err != nil {
		return nil, nil, err
	}
	read := make([]heldBlock, len(blocks))
	for i, b := range blocks {
		read[i] = heldBlock{idx: first + int64(i), data: b}
	}
	return c.out(p, off, end, first, blocks, ref), read, eofIf(end-off < int64(len(p)))
}

// out returns bytes [off, end) from blocks (first is the index of blocks[0]):
// with ref and a single block, a sub-slice of it; else copied into p.
func (c *Cache) out(p []byte, off, end, first int64, blocks [][]byte, ref bool) []byte {
	if ref && len(blocks) == 1 {
		bstart := first * c.bs
		return blocks[0][off-bstart : end-bstart : end-bstart]
	}
	n := 0
	for i, b := range blocks {
		bstart := (first + int64(i)) * c.bs
		lo := max(off, bstart) - bstart
		hi := min(end, bstart+int64(len(b))) - bstart
		n += copy(p[n:], b[lo:hi])
	}
	return p[:n]
}

func eofIf(short bool) error {
	if short {
		return io.EOF
	}
	return nil
}

// Drop forgets every cached block of objectID in every tier (and any
// read-ahead held for it); fetches in flight for it are not stored.
func (c *Cache) Drop(objectID string) {
	c.mu.Lock()
	c.gens[objectID]++
	for k, cl := range c.calls {
		if k.id == objectID {
			cl.dropped = true
			delete(c.calls, k)
		}
	}
	for k, e := range c.ready {
		if k.id == objectID {
			c.removeReadyLocked(e)
		}
	}
	c.mu.Unlock()
	if c.disk != nil {
		c.disk.dropObject(objectID)
	}
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	s := Stats{
		MemoryHits:         c.st.memHits.Load(),
		ReadaheadHits:      c.st.raHits.Load(),
		DiskHits:           c.st.diskHits.Load(),
		WaitHits:           c.st.waitHits.Load(),
		Misses:             c.st.misses.Load(),
		Requests:           c.st.requests.Load(),
		Retries:            c.st.retries.Load(),
		FetchErrors:        c.st.fetchErrors.Load(),
		BytesFetched:       c.st.bytesFetched.Load(),
		InFlight:           c.st.inFlight.Load(),
		MaxInFlight:        c.st.maxInFlight.Load(),
		ChecksumMismatches: c.st.mismatches.Load(),
		HashedBytes:        c.st.hashed.Load(),
		ReadaheadDropped:   c.st.raDropped.Load(),
	}
	c.waits.fill(&s)
	c.mu.Lock()
	s.ReadaheadBytes = c.readyBytes
	c.mu.Unlock()
	if c.mem != nil {
		s.MemoryBytes = c.mem.used()
	}
	if c.disk != nil {
		s.DiskBytes, s.DiskBlocks, s.DiskCorrupt, s.DiskErrors = c.disk.stats()
		s.DiskStuckFiles, s.DiskStuckBytes = c.disk.stuckStats()
	}
	return s
}

// Cancel is the first step of the owner's shutdown order (cancel, wait, close): fetches in flight
// or waiting for a slot are cancelled and no new one starts, so every read waiting on the platform
// returns ErrClosed now; blocks already held are still served. It does not wait (Wait does) and is
// safe to call more than once and before Close.
func (c *Cache) Cancel() {
	c.mu.Lock()
	c.shut = true
	c.roomFreedLocked() // fetches waiting for room give up
	c.mu.Unlock()
	c.cancel()
}

// Wait waits for the fetch goroutines to end; without Cancel first it waits for the platform.
func (c *Cache) Wait() { c.wg.Wait() }

// Close cancels fetches in flight, waits for them, and releases the tiers.
// Cached disk blocks stay for the next New with the same DiskDir.
func (c *Cache) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.Cancel()
	c.Wait()
	if c.mem != nil {
		c.mem.close()
	}
	if c.disk != nil {
		c.disk.close()
	}
	return nil
}
