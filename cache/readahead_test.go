package cache

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
)

// TestConcurrentReadersKeepTheirReadahead: sequential readers whose read-ahead windows together exceed
// the fetch budget do not evict each other's unconsumed read-ahead: with no memory or disk tier to fall
// back on, an evicted block would be fetched a second time. Every block of every object is fetched
// exactly once, nothing read ahead is dropped, and the budget holds.
func TestConcurrentReadersKeepTheirReadahead(t *testing.T) {
	const readers, nblocks = 4, 96
	src := newFake()
	opts := testOptions(t)
	opts.MemoryBytes = -1
	opts.Readahead = 4 << 20 // each reader's window alone is the whole budget (8 * 512 KiB)
	c := newTestCache(t, src, opts)
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
	settle(c)
	for _, obj := range objs {
		for idx, n := range src.blockFetches(obj.ID, testBS) {
			if n != 1 {
				t.Errorf("%s block %d fetched %d times", obj.ID, idx, n)
			}
		}
	}
	if s := c.Stats(); s.ReadaheadDropped != 0 || s.BytesFetched != readers*nblocks*testBS {
		t.Errorf("read-ahead blocks dropped %d, bytes fetched %d of %d", s.ReadaheadDropped, s.BytesFetched, readers*nblocks*testBS)
	}
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
