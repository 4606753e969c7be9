package cache

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rescalefs/rescalefs/internal/sha512x"
)

// ErrChecksumMismatch is wrapped by the error of the read that completed a
// whole-file read whose sha512 differs from the expected one.
var ErrChecksumMismatch = errors.New("cache: whole-file sha512 mismatch")

// maxPending bounds the blocks a verifier holds while reads arrive out of
// order (the kernel may send a handle's reads concurrently); more than that
// means the file is not being read in order and verification is given up.
const maxPending = 8

// Each verifier may have one in-order block queued (the one being hashed
// included) before a read waits for the hashing goroutine: that is what
// pipelining needs, and with a reader's current block it is what the mount
// reserves per reader. Beyond that, a verifier borrows slack from the Cache's
// hashSlack, shared by all of them, so that neither side waits for the other's
// every stall: on two cores the hash, the reader and the copy into the page
// cache take turns, and with one block of slack the reply path waited for the
// hash about once per block (100 times in a 1 GiB cp). The slack is bounded in
// bytes across the Cache, not per verifier: four readers each queueing four
// 8 MiB blocks came to 128 MiB outside every budget.
const hashSlackBytes = 32 << 20

// hashSlack holds one token per block queued for hashing beyond each verifier's first, or pulled
// by its hash ahead of its reader (see hashSlackBytes and verifier.pullLocked). Verifiers take tokens
// without waiting and give them back as their queues drain and their readers catch up. A reader that
// stops early (head of a large file) keeps the few it pulled until it closes; others then do without.
type hashSlack chan struct{}

func newHashSlack(bs int64) hashSlack { return make(hashSlack, max(1, hashSlackBytes/bs)) }

func (s hashSlack) tryTake() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s hashSlack) give() { <-s }

// verifier hashes an object's blocks in index order. It hashes the immutable
// cached blocks, whole, so the check covers exactly the data the cache serves.
// Hashing runs beside the reads, on a goroutine that lives while there are
// blocks to hash: a read hands its blocks over and answers at once, and only
// the read completing the file waits for the sum. The goroutine also takes the
// next blocks itself, before the reader reads them, when the fetcher has them
// at hand (pulled): then the hash keeps going while the reader is held up
// elsewhere (by the program it feeds, or by the kernel), and the read
// completing the file finds the sum nearly done. A pulled block is checked to
// be the one the reader is served (the same buffer, or else the same bytes).
type verifier struct {
	obj     Object
	want    string
	nblocks int64
	hashed  *atomic.Int64 // the Cache's counter of bytes hashed
	slack   hashSlack     // the Cache's, shared by its verifiers
	// pull returns block idx if the fetcher has it at hand (nil if not, or if the Reader is closed).
	// Called without mu.
	pull func(idx int64) []byte

	// mu protects everything below; cond (on mu) signals progress of the
	// hashing goroutine (a queue slot freed, the sum done).
	mu      sync.Mutex
	cond    *sync.Cond
	h       hash.Hash        // owned by the hashing goroutine while hashing is set
	next    int64            // next block index to queue for hashing
	read    int64            // next block index the reader has to hand over; read <= next
	pending map[int64][]byte // blocks the reader handed over ahead of read
	// pulled holds the blocks in [read, next), queued or hashed before the reader handed them
	// over; each holds a slack token until it does.
	pulled  map[int64][]byte
	queue   []queued // in-order blocks not yet hashed
	byRead  int      // blocks in queue that reads queued (not pulled)
	hashing bool     // a goroutine is draining queue
	borrow  int      // slack tokens held for reads' blocks: at most byRead-1, given back as it drains
	differs bool     // a pulled block was not what the reader was served: the verdict is a mismatch
	sum     string   // set when every block is hashed, until the verdict is taken
	state   verifyState
}

type queued struct {
	data   []byte
	pulled bool
}

type verifyState int

const (
	verifying verifyState = iota
	verifyMatched
	verifyAbandoned // not read in order (or the Reader closed first): no verdict
)

// servedDiffers stands for the computed sum when a block hashed ahead of the reader was not the
// block the reader was then served: the hash does not cover the bytes served, so it cannot match.
const servedDiffers = "(a block served differs from the one hashed)"

func newVerifier(obj Object, want string, nblocks int64, hashed *atomic.Int64, slack hashSlack, pull func(int64) []byte) *verifier {
	v := &verifier{obj: obj, want: strings.ToLower(want), nblocks: nblocks, hashed: hashed, slack: slack,
		pull: pull, h: sha512x.New(), pending: make(map[int64][]byte), pulled: make(map[int64][]byte)}
	v.cond = sync.NewCond(&v.mu)
	return v
}

func (v *verifier) matched() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state == verifyMatched
}

// observe feeds blocks a read returned. It returns the computed sum and true
// when this call completed the file (then it waited for the hashing).
func (v *verifier) observe(held []heldBlock) (sum string, complete bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != verifying {
		return "", false
	}
	before := v.read
	for _, b := range held {
		switch {
		case b.idx == v.read:
			v.handOverLocked(b.data)
			for {
				d, ok := v.pending[v.read]
				if !ok {
					break
				}
				delete(v.pending, v.read)
				v.handOverLocked(d)
			}
		case b.idx > v.read:
			v.pending[b.idx] = b.data
			if len(v.pending) > maxPending {
				v.abandonLocked()
				return "", false
			}
		}
	}
	// Decided before any wait (which lets other reads in): only the call
	// that handed over the last block waits for the verdict.
	completing := before < v.nblocks && v.read >= v.nblocks
	if v.nblocks == 0 && before == 0 {
		v.read = 1
		v.enqueueLocked(nil, false) // an empty object: its first read completes it
		completing = true
	}
	if !completing {
		// Backpressure: a reader faster than the hashing waits here, after
		// its blocks are queued, so the queue never sees a block twice or
		// out of order; first it borrows what slack is free.
		for v.byRead > 1+v.borrow {
			if v.slack.tryTake() {
				v.borrow++
				continue
			}
			v.cond.Wait()
		}
		return "", false
	}
	for v.sum == "" {
		v.cond.Wait()
	}
	sum, v.sum = v.sum, ""
	if v.differs {
		sum = servedDiffers
	}
	if sum == v.want {
		v.state = verifyMatched
	} else {
		// Start over: after the drop, a re-read fetches afresh and is checked again.
		v.h.Reset()
		v.next, v.read, v.differs = 0, 0, false
		clear(v.pending)
	}
	return sum, true
}

// handOverLocked takes block v.read from the reader: it is queued for hashing, or, if the hashing
// pulled it already, checked to be what was hashed.
func (v *verifier) handOverLocked(b []byte) {
	idx := v.read
	v.read++
	if idx == v.next {
		v.enqueueLocked(b, false)
		return
	}
	p := v.pulled[idx]
	delete(v.pulled, idx)
	v.slack.give()
	if len(p) != len(b) || len(b) > 0 && &p[0] != &b[0] && !bytes.Equal(p, b) {
		v.differs = true
	}
}

// abandonLocked gives up on a verdict (the reads left the file's order, or the Reader closed) and
// gives back the slack the pulled blocks hold; blocks queued are still hashed, harmlessly.
func (v *verifier) abandonLocked() {
	v.state = verifyAbandoned
	v.pending = nil
	for range v.pulled {
		v.slack.give()
	}
	v.pulled = nil
}

// close is called when the Reader closes: no more blocks come from it.
func (v *verifier) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state == verifying {
		v.abandonLocked()
	}
}

// enqueueLocked queues block v.next for hashing and starts the hashing
// goroutine if none runs. It never waits: the blocks of one read are queued
// together, under one hold of mu.
func (v *verifier) enqueueLocked(b []byte, pulled bool) {
	v.queue = append(v.queue, queued{b, pulled})
	if !pulled {
		v.byRead++
	}
	v.next++
	if !v.hashing {
		v.hashing = true
		go v.drain()
	}
}

// kick starts the hashing goroutine, if none runs, to pull blocks the fetcher has just completed.
func (v *verifier) kick() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.hashing || v.state != verifying || v.pull == nil || v.next >= v.nblocks {
		return
	}
	v.hashing = true
	go v.drain()
}

// drain hashes queued blocks in order, pulling the next ones while the fetcher
// has them, then exits. The block completing the object also computes the sum.
func (v *verifier) drain() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		for len(v.queue) > 0 {
			q := v.queue[0]
			v.mu.Unlock()
			v.h.Write(q.data) // v.h is ours while hashing is set
			v.hashed.Add(int64(len(q.data)))
			v.mu.Lock()
			v.queue[0] = queued{}
			v.queue = v.queue[1:]
			if !q.pulled {
				v.byRead--
			}
			for v.borrow > max(0, v.byRead-1) {
				v.borrow--
				v.slack.give()
			}
			if len(v.queue) == 0 && v.next >= v.nblocks {
				v.sum = hex.EncodeToString(v.h.Sum(nil))
			}
			v.cond.Broadcast()
		}
		if !v.pullLocked() {
			break
		}
	}
	v.hashing = false
}

// pullLocked queues block v.next for hashing before the reader hands it over, if the fetcher has it
// at hand and a slack token is free (the token bounds how far the hash runs ahead, and the memory a
// pulled block holds should the tiers drop it before the reader comes). It reports whether the
// queue has blocks again (the reader may have queued some while mu was released to ask the Cache).
func (v *verifier) pullLocked() bool {
	if v.pull == nil || v.state != verifying || v.next >= v.nblocks || !v.slack.tryTake() {
		return len(v.queue) > 0
	}
	idx := v.next
	v.mu.Unlock()
	b := v.pull(idx) // lock order: verifier.mu is never held while taking Cache.mu
	v.mu.Lock()
	if b == nil || v.next != idx || v.state != verifying {
		v.slack.give()
		return len(v.queue) > 0
	}
	v.pulled[idx] = b
	v.enqueueLocked(b, true)
	return true
}

// verify feeds a read's blocks to the verifier; on a mismatch it drops the
// object's cached blocks, logs, and returns the error for the read.
func (r *Reader) verify(held []heldBlock) error {
	sum, complete := r.v.observe(held)
	c := r.c
	if complete && sum == r.v.want && c.disk != nil {
		c.disk.markVerified(r.obj, r.v.want)
	}
	if !complete || sum == r.v.want {
		return nil
	}
	c.st.mismatches.Add(1)
	c.log.Warn("whole-file sha512 mismatch; dropped cached blocks",
		"object", r.obj.ID, "size", r.obj.Size, "want", r.v.want, "got", sum)
	c.Drop(r.obj.ID)
	err := fmt.Errorf("%w: object %s: got %s, want %s", ErrChecksumMismatch, r.obj.ID, sum, r.v.want)
	r.mu.Lock()
	r.held = heldPair{}
	r.failed = err
	r.mu.Unlock()
	return err
}
