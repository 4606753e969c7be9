package cache

import (
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

// hashSlack holds one token per block queued for hashing beyond each verifier's first (see
// hashSlackBytes). Verifiers take tokens without waiting and give them back as their queues drain.
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

// verifier hashes an object's blocks in index order as reads return them.
// It hashes the immutable cached blocks, whole, so the check covers exactly
// the data the cache serves. Hashing runs beside the reads, on a goroutine
// that lives while there are queued blocks: a read hands its blocks over and
// answers at once, and only the read completing the file waits for the sum.
type verifier struct {
	obj     Object
	want    string
	nblocks int64
	hashed  *atomic.Int64 // the Cache's counter of bytes hashed
	slack   hashSlack     // the Cache's, shared by its verifiers

	// mu protects everything below; cond (on mu) signals progress of the
	// hashing goroutine (a queue slot freed, the sum done).
	mu      sync.Mutex
	cond    *sync.Cond
	h       hash.Hash        // owned by the hashing goroutine while hashing is set
	next    int64            // next block index to queue for hashing
	pending map[int64][]byte // blocks read ahead of next
	queue   [][]byte         // in-order blocks not yet hashed
	hashing bool             // a goroutine is draining queue
	borrow  int              // slack tokens held: at most len(queue)-1, given back as it drains
	sum     string           // set when every block is hashed, until the verdict is taken
	state   verifyState
}

type verifyState int

const (
	verifying verifyState = iota
	verifyMatched
	verifyAbandoned // not read in order: no verdict
)

func newVerifier(obj Object, want string, nblocks int64, hashed *atomic.Int64, slack hashSlack) *verifier {
	v := &verifier{obj: obj, want: strings.ToLower(want), nblocks: nblocks, hashed: hashed, slack: slack,
		h: sha512x.New(), pending: make(map[int64][]byte)}
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
	before := v.next
	for _, b := range held {
		switch {
		case b.idx == v.next:
			v.enqueueLocked(b.data)
			for {
				d, ok := v.pending[v.next]
				if !ok {
					break
				}
				delete(v.pending, v.next)
				v.enqueueLocked(d)
			}
		case b.idx > v.next:
			v.pending[b.idx] = b.data
			if len(v.pending) > maxPending {
				v.state = verifyAbandoned
				v.pending = nil
				return "", false
			}
		}
	}
	// Decided before any wait (which lets other reads in): only the call
	// that queued the last block waits for the verdict.
	completing := before < v.nblocks && v.next >= v.nblocks
	if v.nblocks == 0 && before == 0 {
		v.enqueueLocked(nil) // an empty object: its first read completes it
		completing = true
	}
	if !completing {
		// Backpressure: a reader faster than the hashing waits here, after
		// its blocks are queued, so the queue never sees a block twice or
		// out of order; first it borrows what slack is free.
		for len(v.queue) > 1+v.borrow {
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
	if sum == v.want {
		v.state = verifyMatched
	} else {
		// Start over: after the drop, a re-read fetches afresh and is checked again.
		v.h.Reset()
		v.next = 0
		clear(v.pending)
	}
	return sum, true
}

// enqueueLocked queues block v.next for hashing and starts the hashing
// goroutine if none runs. It never waits: the blocks of one read are queued
// together, under one hold of mu.
func (v *verifier) enqueueLocked(b []byte) {
	v.queue = append(v.queue, b)
	v.next++
	if !v.hashing {
		v.hashing = true
		go v.drain()
	}
}

// drain hashes queued blocks in order until the queue is empty, then exits.
// The block completing the object also computes the sum.
func (v *verifier) drain() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for len(v.queue) > 0 {
		b := v.queue[0]
		v.mu.Unlock()
		v.h.Write(b) // v.h is ours while hashing is set
		v.hashed.Add(int64(len(b)))
		v.mu.Lock()
		v.queue[0] = nil
		v.queue = v.queue[1:]
		for v.borrow > max(0, len(v.queue)-1) {
			v.borrow--
			v.slack.give()
		}
		if len(v.queue) == 0 && v.next >= v.nblocks {
			v.sum = hex.EncodeToString(v.h.Sum(nil))
		}
		v.cond.Broadcast()
	}
	v.hashing = false
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
	r.cur = nil
	r.failed = err
	r.mu.Unlock()
	return err
}
