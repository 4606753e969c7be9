package cache

import (
	"bytes"
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
