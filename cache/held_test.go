package cache

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// A read that spans two blocks and the reads around it, sent by the kernel concurrently, arrive in any
// order (cp and cat read 256 KiB, so the kernel's 1 MiB read-ahead requests start mid-block and one in
// eight spans two blocks). The Reader holds the block before its last one too: a read that comes after
// the next one has moved it on finds its block there, not in the tiers.
func TestReadFindsTheBlockBeforeTheLast(t *testing.T) {
	f := newFake()
	obj := f.add("obj", 3*testBS)
	c := newReadaheadOnlyCache(t, f) // no memory tier: a block the Reader lets go is fetched again
	r := c.NewReader(obj, "")
	t.Cleanup(func() { r.Close() })
	p := make([]byte, 4096)
	for _, off := range []int64{testBS - 2048, testBS + 4096} { // spans blocks 0 and 1; then in 1
		if _, err := r.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
	}
	calls := f.numCalls()
	// The read in block 0 that the kernel sent before those two arrives last.
	if _, err := r.ReadAt(context.Background(), p, testBS-8192); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, f.objects["obj"][testBS-8192:testBS-4096]) {
		t.Fatal("wrong bytes")
	}
	if n := f.numCalls() - calls; n != 0 {
		t.Fatalf("the late read in block 0 made %d requests, want 0 (the Reader holds block 0)", n)
	}
}

// A read takes the blocks it finds at hand (on the ready list) as its own before it waits for the
// rest. The kernel's next read, sent meanwhile, finds them held: before, the first read took a block
// off the ready list and held it only once all its blocks had come, and the next read, finding the
// block nowhere, fetched (or loaded from the disk tier) it a second time.
func TestConcurrentReadFindsTheBlockAnotherTookOffReady(t *testing.T) {
	f := newFake()
	obj := f.add("obj", 4*testBS)
	c := newReadaheadOnlyCache(t, f)
	// Blocks 0 and 1 read ahead, waiting on the ready list.
	c.Prefetch(Object{ID: obj.ID, Size: 2 * testBS})
	eventually(t, "blocks 0 and 1 on the ready list", func() bool {
		return c.atHand(obj, 0) != nil && c.atHand(obj, 1) != nil
	})
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate // every fetch from now on waits
	f.mu.Unlock()
	t.Cleanup(func() { close(gate) })
	calls := f.numCalls()

	r := c.NewReader(obj, "")
	t.Cleanup(func() { r.Close() })
	// Read A spans blocks 1 (ready) and 2 (fetched, held at the gate): it waits.
	a := make(chan error, 1)
	go func() {
		_, err := r.ReadAt(context.Background(), make([]byte, 8192), 2*testBS-4096)
		a <- err
	}()
	eventually(t, "read A waiting for block 2", func() bool { return f.numCalls() > calls })
	calls = f.numCalls()
	// Read B, in block 1, comes while A waits.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := make([]byte, 4096)
	if _, err := r.ReadAt(ctx, p, testBS+4096); err != nil {
		t.Fatalf("read B in block 1, which read A took off the ready list: %v (fetched again: %d requests)", err, f.numCalls()-calls)
	}
	if !bytes.Equal(p, f.objects["obj"][testBS+4096:testBS+8192]) {
		t.Fatal("wrong bytes")
	}
	if n := f.numCalls() - calls; n != 0 {
		t.Fatalf("read B made %d requests, want 0", n)
	}
	select {
	case err := <-a:
		t.Fatalf("read A returned before block 2 came: %v", err)
	default:
	}
}
