package cache

import (
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
)

// ErrChecksumMismatch is wrapped by the error of the read that completed a
// whole-file read whose sha512 differs from the expected one.
var ErrChecksumMismatch = errors.New("cache: whole-file sha512 mismatch")

// maxPending bounds the blocks a verifier holds while reads arrive out of
// order (the kernel may send a handle's reads concurrently); more than that
// means the file is not being read in order and verification is given up.
const maxPending = 8

// verifier hashes an object's blocks in index order as reads return them.
// It hashes the immutable cached blocks, whole, so the check covers exactly
// the data the cache serves.
type verifier struct {
	obj     Object
	want    string
	nblocks int64

	// mu protects h, next, pending, state.
	mu      sync.Mutex
	h       hash.Hash
	next    int64            // next block index to hash
	pending map[int64][]byte // blocks read ahead of next
	state   verifyState
}

type verifyState int

const (
	verifying verifyState = iota
	verifyMatched
	verifyAbandoned // not read in order: no verdict
)

func newVerifier(obj Object, want string, nblocks int64) *verifier {
	return &verifier{obj: obj, want: strings.ToLower(want), nblocks: nblocks,
		h: sha512.New(), pending: make(map[int64][]byte)}
}

func (v *verifier) matched() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state == verifyMatched
}

// observe feeds blocks a read returned. It returns the computed sum and true
// when this call completed the file.
func (v *verifier) observe(held []heldBlock) (sum string, complete bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.state != verifying {
		return "", false
	}
	for _, b := range held {
		switch {
		case b.idx == v.next:
			v.h.Write(b.data)
			v.next++
			for {
				d, ok := v.pending[v.next]
				if !ok {
					break
				}
				delete(v.pending, v.next)
				v.h.Write(d)
				v.next++
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
	if v.next < v.nblocks {
		return "", false
	}
	sum = hex.EncodeToString(v.h.Sum(nil))
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

// verify feeds a read's blocks to the verifier; on a mismatch it drops the
// object's cached blocks, logs, and returns the error for the read.
func (r *Reader) verify(held []heldBlock) error {
	sum, complete := r.v.observe(held)
	if !complete || sum == r.v.want {
		return nil
	}
	c := r.c
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
