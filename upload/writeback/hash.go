package writeback

import (
	"encoding/hex"
	"hash"
	"os"

	"github.com/rescalefs/rescalefs/internal/sha512x"
)

// The sha512 of a file's staging data is computed while it is written, so that its upload needs no
// pass of its own over the data before the first part goes (the engine's check of a 1 GiB file takes
// about 2 s of one core; the writer's copy and the settle time hide it). A hasher follows the data in
// order, reading back from the staging file (the page cache) what was written, on its own goroutine,
// never on the writer's: a FUSE write only books its offset. The sum reaches the engine with the file
// (EnqueueHashed) only when it covers the whole content at the moment the file is queued.
//
// Whatever changes content the hasher has read (an overwrite, a truncate, a new staging copy) starts
// it again: at once when the change rewrites the file from offset 0 (cp over it), else only at the
// next close, so a writer that keeps writing behind the hasher costs at most one pass per close.

// hashChunk is what a hasher reads and hashes at a time.
const hashChunk = 1 << 20

// hashers is how many chunks are hashed at once in a Set (each with its buffer): a bound on the CPU
// and memory that hashing takes however many files are written at once.
const hashers = 2

// prehash is the hash state of one file, guarded by File.mu.
type prehash struct {
	h       hash.Hash // over the content [0, off); nil until the hasher starts
	off     int64
	reading int64  // the end of the chunk being read and hashed (== off when none is)
	gen     uint64 // bumped when the state is reset: a chunk read before it is dropped
	running bool   // a hasher goroutine is working on this file
	stopped bool   // content behind the hasher changed: wait for the next close (or a rewrite from 0)
}

// hashChangedLocked books a change of content from offset off on (a write at off, a truncate to off).
func (f *File) hashChangedLocked(off int64) {
	ph := &f.ph
	if off < ph.reading || off < ph.off {
		ph.h, ph.off, ph.reading = nil, 0, 0
		ph.gen++
		ph.stopped = off > 0
	}
	f.hashKickLocked()
}

// hashClosedLocked books a close: a hasher that stopped starts again from 0.
func (f *File) hashClosedLocked() {
	f.ph.stopped = false
	f.hashKickLocked()
}

// hashKickLocked starts the hasher when there is content it has not hashed (and the mount is not
// gone: SettleAll(true)).
func (f *File) hashKickLocked() {
	ph := &f.ph
	if ph.running || ph.stopped || !f.owned || f.state.Terminal() || ph.off >= f.size {
		return
	}
	s := f.set
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.final.Load() {
		return
	}
	s.hashing.Add(1)
	ph.running = true
	go f.hashLoop()
}

// hashResetLocked forgets the hash (the data was handed over, or replaced by another file).
func (f *File) hashResetLocked() {
	ph := &f.ph
	ph.h, ph.off, ph.reading = nil, 0, 0
	ph.gen++
	ph.stopped = false
}

// hashSumLocked is the hex sha512 of the whole content, "" when the hasher has not covered it.
func (f *File) hashSumLocked() string {
	ph := &f.ph
	if !f.owned || ph.off != f.size || ph.reading != ph.off || ph.stopped {
		return ""
	}
	if ph.h == nil { // an empty file
		return hex.EncodeToString(sha512x.New().Sum(nil))
	}
	return hex.EncodeToString(ph.h.Sum(nil))
}

// hashLoop hashes the file's content chunk by chunk until it has caught up with the writes, the
// file stops being ours, or a change stops it. The chunk is read and hashed without File.mu (writes
// go on meanwhile); it counts only if no change reset the state in between.
func (f *File) hashLoop() {
	defer f.set.hashing.Done()
	for {
		f.mu.Lock()
		ph := &f.ph
		if ph.stopped || !f.owned || f.state.Terminal() || ph.off >= f.size || f.set.final.Load() {
			ph.running = false
			f.mu.Unlock()
			return
		}
		if ph.h == nil {
			ph.h = sha512x.New()
		}
		h, gen, data, a := ph.h, ph.gen, f.data, ph.off
		b := min(f.size, a+hashChunk)
		ph.reading = b
		f.mu.Unlock()

		ok := f.set.hashChunk(h, data, a, b)

		f.mu.Lock()
		if gen == ph.gen && data == f.data {
			if ok {
				ph.off = b
			} else { // unreadable (closed at unmount, an I/O error): the engine hashes it itself
				ph.h, ph.off, ph.stopped = nil, 0, true
				ph.gen++
			}
			ph.reading = ph.off
		}
		f.mu.Unlock()
	}
}

// hashChunk adds data [a, b) to h, with one of the Set's hashing buffers (waiting for one, unless the
// mount is gone).
func (s *Set) hashChunk(h hash.Hash, data *os.File, a, b int64) bool {
	var buf []byte
	select {
	case buf = <-s.hashBufs:
	case <-s.stopHashing:
		return false
	}
	defer func() { s.hashBufs <- buf }()
	if buf == nil {
		buf = make([]byte, hashChunk)
	}
	p := buf[:b-a]
	if n, _ := data.ReadAt(p, a); n != len(p) { // n < len(p) comes with the error
		return false
	}
	h.Write(p)
	return true
}
