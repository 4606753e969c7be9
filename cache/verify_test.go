package cache

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
	"sync"
	"testing"
	"time"
)

// gatedHash is sha512 whose Write waits until gate is closed: the hashing is held up on purpose.
type gatedHash struct {
	hash.Hash
	gate chan struct{}
}

func (g gatedHash) Write(p []byte) (int, error) {
	<-g.gate
	return g.Hash.Write(p)
}

// TestHashingBesideTheReads: a read returns while the whole-file hash of its block has not caught up
// (sha512 runs beside the reads, not on them); the read completing the file waits for the verdict and
// gets it.
func TestHashingBesideTheReads(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 3*testBS)
	sum := sha512.Sum512(src.objects["obj"])
	c := newTestCache(t, src, testOptions(t))
	r := c.NewReader(obj, hex.EncodeToString(sum[:]))
	gate := make(chan struct{})
	r.v.h = gatedHash{r.v.h, gate}

	done := make(chan error, 1)
	go func() {
		// Block 0 is answered while its hashing is held up (maxQueued blocks may lag).
		_, err := r.ReadAt(context.Background(), make([]byte, testBS), 0)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // a hang guard, not a timing
		close(gate)
		t.Fatal("reads waited for the hashing")
	}
	if r.Verified() {
		t.Fatal("verified before the last block")
	}
	last := make(chan error, 1)
	go func() {
		p := make([]byte, testBS)
		for off := int64(testBS); off < 3*testBS; off += testBS {
			if _, err := r.ReadAt(context.Background(), p, off); err != nil {
				last <- err
				return
			}
		}
		last <- nil
	}()
	close(gate)
	if err := <-last; err != nil {
		t.Fatal(err)
	}
	if !r.Verified() {
		t.Fatal("not verified after the last read")
	}
	settle(c)
}

// TestVerifiedFileNotHashedAgain: a file verified once, with every block in the disk tier, is not
// hashed again by a later reader (even after a restart); a missing block or another expected sum
// means hashing again, and a mismatch forgets the verdict.
func TestVerifiedFileNotHashedAgain(t *testing.T) {
	dir := t.TempDir()
	src := newFake()
	obj := src.add("obj", 3*testBS+5)
	sum := sha512.Sum512(src.objects["obj"])
	good := hex.EncodeToString(sum[:])

	c1 := newTestCache(t, src, diskOptions(t, dir))
	r1 := c1.NewReader(obj, good)
	if _, err := readAll(t, r1, obj.Size, 64<<10); err != nil {
		t.Fatal(err)
	}
	if r1.v == nil || !r1.Verified() {
		t.Fatal("first reader: not hashed and verified")
	}
	settle(c1)
	if r := c1.NewReader(obj, good); r.v != nil || !r.Verified() {
		t.Fatal("second reader hashes again")
	}
	if r := c1.NewReader(obj, "00"+good[2:]); r.v == nil {
		t.Fatal("another expected sum: not hashed")
	}
	c1.Close()

	c2 := newTestCache(t, src, diskOptions(t, dir))
	r2 := c2.NewReader(obj, good)
	if r2.v != nil || !r2.Verified() {
		t.Fatal("after a restart: hashed again")
	}
	if got, err := readAll(t, r2, obj.Size, 64<<10); err != nil || string(got) != string(src.objects["obj"]) {
		t.Fatalf("err=%v, bytes equal %v", err, string(got) == string(src.objects["obj"]))
	}
	c2.disk.remove(obj, testBS, 1)
	if r := c2.NewReader(obj, good); r.v == nil {
		t.Fatal("a block missing from disk: not hashed")
	}
	c2.Drop(obj.ID)
	if _, err := os.Stat(c2.disk.verifiedPath(objHash(obj.ID))); !os.IsNotExist(err) {
		t.Fatalf("marker after Drop: %v", err)
	}
}

// TestConcurrentReadsOfOneHandleVerify: the kernel sends a handle's reads concurrently (its read-ahead),
// so several reads may bring the same new block at once, and they return in any order; each block must
// still be hashed exactly once, in order, and a good file verified. Like the kernel's, the reads stay
// within a window of the oldest one not yet answered (here four blocks, under maxPending), so giving up
// on the order is never right here: every round must verify, hashing exactly the object's bytes.
func TestConcurrentReadsOfOneHandleVerify(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 40*testBS+123)
	sum := sha512.Sum512(src.objects["obj"])
	good := hex.EncodeToString(sum[:])
	const piece, span = 16 << 10, 4 * testBS
	for round := range 20 {
		c := newTestCache(t, src, testOptions(t))
		r := c.NewReader(obj, good)
		w := newReadWindow(span)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for range 8 {
			wg.Go(func() {
				p := make([]byte, piece)
				for {
					off := w.take(piece)
					if off >= obj.Size {
						w.done(off, piece)
						return
					}
					_, err := r.ReadAt(context.Background(), p, off)
					w.done(off, piece)
					if err != nil && !errors.Is(err, io.EOF) {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !r.Verified() {
			t.Fatalf("round %d: reads within %d bytes of each other, and the file not verified", round, span)
		}
		if s := c.Stats(); s.HashedBytes != obj.Size {
			t.Fatalf("round %d: %d bytes hashed for a %d-byte object", round, s.HashedBytes, obj.Size)
		}
		settle(c)
		c.Close()
	}
}

// readWindow hands out consecutive offsets to concurrent readers, never one at or beyond span bytes
// past the oldest offset whose read has not returned (the kernel's reads of a handle stay that close).
type readWindow struct {
	mu        sync.Mutex // guards the fields below
	cond      *sync.Cond
	span      int64
	next, low int64          // next offset to hand out; oldest not returned
	returned  map[int64]bool // offsets at or past low whose read returned
}

func newReadWindow(span int64) *readWindow {
	w := &readWindow{span: span, returned: map[int64]bool{}}
	w.cond = sync.NewCond(&w.mu)
	return w
}

func (w *readWindow) take(n int64) int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.next+n > w.low+w.span {
		w.cond.Wait()
	}
	off := w.next
	w.next += n
	return off
}

func (w *readWindow) done(off, n int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.returned[off] = true
	for w.returned[w.low] {
		delete(w.returned, w.low)
		w.low += n
	}
	w.cond.Broadcast()
}

// TestHashSlackSharedByReaders: a reader whose whole-file hash is held up runs ahead of it by its one
// block plus the slack it can borrow from the Cache (not one block, which made the reply path wait for
// the hash at every block of a cold cp), and then waits; a second reader, with the slack lent out, may
// queue its one block only. The slack comes back as the queues drain and none is left held.
func TestHashSlackSharedByReaders(t *testing.T) {
	const slack, nblocks = 2, 6
	src := newFake()
	objA, objB := src.add("a", nblocks*testBS), src.add("b", nblocks*testBS)
	opts := testOptions(t)
	opts.Readahead = -1 // no read-ahead: the hash has nothing to pull, only what the reads hand over
	c := newTestCache(t, src, opts)
	c.hashSlack = make(hashSlack, slack)
	type gated struct {
		r     *Reader
		gate  chan struct{}
		reads chan int64 // offsets whose read returned
		err   chan error
	}
	start := func(obj Object) *gated {
		sum := sha512.Sum512(src.objects[obj.ID])
		g := &gated{r: c.NewReader(obj, hex.EncodeToString(sum[:])), gate: make(chan struct{}),
			reads: make(chan int64, nblocks), err: make(chan error, 1)}
		g.r.v.h = gatedHash{g.r.v.h, g.gate}
		go func() {
			p := make([]byte, testBS)
			for off := int64(0); off < obj.Size; off += testBS {
				if _, err := g.r.ReadAt(context.Background(), p, off); err != nil && !errors.Is(err, io.EOF) {
					g.err <- err
					return
				}
				g.reads <- off
			}
			g.err <- nil
		}()
		return g
	}
	queued := func(g *gated) int {
		g.r.v.mu.Lock()
		defer g.r.v.mu.Unlock()
		return len(g.r.v.queue)
	}
	returned := func(g *gated, want int) {
		t.Helper()
		for i := range want {
			select {
			case off := <-g.reads:
				if off != int64(i)*testBS {
					t.Fatalf("read %d returned offset %d", i, off)
				}
			case err := <-g.err:
				t.Fatalf("reader ended early: %v", err)
			case <-time.After(30 * time.Second): // a hang guard, not a timing
				t.Fatalf("read %d did not return while %d blocks may be queued", i, 1+slack)
			}
		}
	}

	a := start(objA)
	// Blocks 0-2 are answered while the hash has not started on block 0; block 3's read queues its
	// block and waits: nothing is left to borrow, and nothing can drain while the gate is shut.
	returned(a, 1+slack)
	eventually(t, "the fourth block queued", func() bool { return queued(a) == 2+slack })
	if len(a.reads) != 0 || len(c.hashSlack) != slack {
		t.Fatalf("%d more reads returned, %d of %d slack tokens taken", len(a.reads), len(c.hashSlack), slack)
	}

	b := start(objB)
	returned(b, 1)
	eventually(t, "the second reader's second block queued", func() bool { return queued(b) == 2 })
	if len(b.reads) != 0 {
		t.Fatal("the second reader ran ahead of its hash with the slack lent out")
	}

	for _, g := range []*gated{a, b} {
		close(g.gate)
		if err := <-g.err; err != nil {
			t.Fatal(err)
		}
		if !g.r.Verified() {
			t.Fatalf("%s not verified", g.r.obj.ID)
		}
	}
	if n := len(c.hashSlack); n != 0 {
		t.Fatalf("%d slack tokens still held after every hash finished", n)
	}
	settle(c)
}

// hashState is a snapshot of a verifier: blocks queued for hashing (next), handed over by the reader
// (read), pulled ahead of it, and whether its hashing goroutine runs.
func hashState(v *verifier) (next, read int64, pulled int, hashing bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.next, v.read, len(v.pulled), v.hashing
}

// TestHashPullsFetchedBlocks: the whole-file hash takes read-ahead blocks as the fetcher completes
// them, before the reader reads them, as far as the slack lets it; every byte is still hashed once,
// and the file verified.
func TestHashPullsFetchedBlocks(t *testing.T) {
	const slack = 3
	src := newFake()
	obj := src.add("obj", 20*testBS+77)
	sum := sha512.Sum512(src.objects["obj"])
	c := newTestCache(t, src, testOptions(t))
	c.hashSlack = make(hashSlack, slack)
	r := c.NewReader(obj, hex.EncodeToString(sum[:]))
	// One bulk read of blocks 0-7: its window reads ahead 8 blocks more.
	if _, err := r.ReadAt(context.Background(), make([]byte, 8*testBS), 0); err != nil {
		t.Fatal(err)
	}
	settle(c)
	eventually(t, "the hash to pull what the slack allows", func() bool {
		next, read, pulled, hashing := hashState(r.v)
		return next == 8+slack && read == 8 && pulled == slack && !hashing
	})
	if got := c.Stats().HashedBytes; got != (8+slack)*testBS {
		t.Fatalf("hashed %d bytes, want %d", got, (8+slack)*testBS)
	}
	if len(c.hashSlack) != slack {
		t.Fatalf("%d slack tokens taken, want %d", len(c.hashSlack), slack)
	}
	if got, err := readAll(t, r, obj.Size, 8*testBS); err != nil || !bytes.Equal(got, src.objects["obj"]) {
		t.Fatalf("err=%v, bytes equal %v", err, bytes.Equal(got, src.objects["obj"]))
	}
	if !r.Verified() {
		t.Fatal("not verified")
	}
	if got := c.Stats().HashedBytes; got != obj.Size {
		t.Fatalf("hashed %d bytes of a %d-byte object", got, obj.Size)
	}
	if n := len(c.hashSlack); n != 0 {
		t.Fatalf("%d slack tokens still held", n)
	}
	r.Close()
	settle(c)
}

// TestPulledBlockMustBeTheOneServed: a block the hash pulled, then dropped by the cache before the
// reader came, is fetched again for the reader. Served the same bytes, the file verifies; served other
// bytes (the platform answered differently the second time), the hash did not cover what was served,
// and the read completing the file fails as a mismatch instead of calling the file verified.
func TestPulledBlockMustBeTheOneServed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt bool
	}{{"same bytes", false}, {"other bytes", true}} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake()
			obj := src.add("obj", 12*testBS)
			good := bytes.Clone(src.objects["obj"])
			sum := sha512.Sum512(good)
			opts := testOptions(t)
			opts.MemoryBytes = -1 // no memory tier: a block dropped from the ready list is gone
			c := newTestCache(t, src, opts)
			r := c.NewReader(obj, hex.EncodeToString(sum[:]))
			if _, err := r.ReadAt(context.Background(), make([]byte, 8*testBS), 0); err != nil {
				t.Fatal(err)
			}
			settle(c)
			eventually(t, "block 8 pulled", func() bool {
				next, _, _, hashing := hashState(r.v)
				return next > 8 && !hashing
			})
			c.mu.Lock()
			e, ok := c.ready[blockKey{obj.ID, 8}]
			if ok {
				c.removeReadyLocked(e)
			}
			c.mu.Unlock()
			if !ok {
				t.Fatal("block 8 not in the ready list")
			}
			if tc.corrupt {
				src.mu.Lock()
				src.objects["obj"][8*testBS+5] ^= 0xff
				src.mu.Unlock()
			}
			_, err := readAll(t, r, obj.Size, testBS)
			switch {
			case tc.corrupt && !errors.Is(err, ErrChecksumMismatch):
				t.Fatalf("other bytes served than hashed: err %v, verified %v", err, r.Verified())
			case !tc.corrupt && (err != nil || !r.Verified()):
				t.Fatalf("same bytes from another buffer: err %v, verified %v", err, r.Verified())
			}
			r.Close()
			settle(c)
		})
	}
}
