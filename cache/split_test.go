package cache

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
)

// splitOptions: 4 MiB blocks (a block splits into parts of at least minSplitPart), no read-ahead.
func splitOptions(t *testing.T, parallel, split int) Options {
	o := testOptions(t)
	o.BlockSize, o.MaxRequestSize, o.MinRequestSize = 4<<20, 4<<20, 4<<20
	o.Parallel, o.SplitMisses, o.Readahead = parallel, split, -1
	return o
}

// A block a reader waits for comes as several concurrent requests over idle slots: a cold read waits
// for a part of the block's transfer time, not all of it.
func TestMissSplitsOverIdleSlots(t *testing.T) {
	const bs = 4 << 20
	tests := []struct {
		name     string
		parallel int
		split    int
		want     []int64 // offsets (within the block) of the calls made
	}{
		{"split in four", 8, 4, []int64{0, 1 << 20, 2 << 20, 3 << 20}},
		{"split limited by slots", 2, 4, []int64{0, 2 << 20}},
		{"splitting off", 8, 0, []int64{0}},
		{"one part per slot", 1, 4, []int64{0}},
	}
	for _, kind := range sourceKinds {
		for _, tc := range tests {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				f := newFake()
				obj := f.add("big", 3*bs)
				c := newTestCache(t, f.as(kind), splitOptions(t, tc.parallel, tc.split))
				p := make([]byte, 4096)
				off := int64(bs + 12345) // inside block 1
				if _, err := c.ReadAt(context.Background(), obj, p, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p, f.objects["big"][off:off+4096]) {
					t.Fatal("wrong bytes")
				}
				var got []int64
				var total int64
				for _, cl := range f.callList() {
					got = append(got, cl.off-bs)
					total += cl.n
				}
				slices.Sort(got)
				if !slices.Equal(got, tc.want) || total != bs {
					t.Fatalf("calls at %v covering %d bytes, want at %v covering the block (%d)", got, total, tc.want, bs)
				}
				if st := c.Stats(); st.Requests != int64(len(tc.want)) || st.InFlight != 0 {
					t.Fatalf("stats: %d requests, %d in flight; want %d, 0", st.Requests, st.InFlight, len(tc.want))
				}
				// The whole block is cached: the rest of it is read without a request.
				f.reset()
				whole := make([]byte, bs)
				if _, err := c.ReadAt(context.Background(), obj, whole, bs); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(whole, f.objects["big"][bs:2*bs]) || f.numCalls() != 0 {
					t.Fatalf("re-read of the block: %d calls, equal=%v", f.numCalls(), bytes.Equal(whole, f.objects["big"][bs:2*bs]))
				}
			})
		}
	}
}

// Splitting takes only idle slots: with the others busy a miss is one request, and never more
// requests are in flight than Parallel.
func TestMissSplitUsesOnlyIdleSlots(t *testing.T) {
	const bs = 4 << 20
	f := newFake()
	f.gate = make(chan struct{})
	objs := []Object{f.add("a", bs), f.add("b", bs), f.add("c", bs)}
	c := newTestCache(t, f, splitOptions(t, 3, 4))
	errs := make(chan error, 3)
	read := func(o Object) {
		_, err := c.ReadAt(context.Background(), o, make([]byte, 10), 0)
		errs <- err
	}
	go read(objs[0]) // takes its own slot and the two idle ones
	eventually(t, "the first miss in three parts", func() bool { return f.numCalls() == 3 })
	go read(objs[1]) // waits for a slot
	go read(objs[2])
	eventually(t, "two fetches waiting for a slot", func() bool { return c.Stats().SlotWaits == 2 })
	close(f.gate)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if m := f.maxInflight(); m > 3 {
		t.Fatalf("%d requests in flight, Parallel is 3", m)
	}
	per := map[string]int{}
	for _, cl := range f.callList() {
		per[cl.id]++
	}
	if per["a"] != 3 {
		t.Fatalf("the first miss made %d requests, want 3 (all slots idle)", per["a"])
	}
	if per["b"]+per["c"] > 2+2 || per["b"] < 1 || per["c"] < 1 {
		t.Fatalf("later misses made %v requests", per)
	}
}

// A failed part fails the block as a whole, which is retried; no bytes of the failed attempt are
// served.
func TestMissSplitPartFailureRetriesTheBlock(t *testing.T) {
	const bs = 4 << 20
	for _, failure := range []error{errTransient, errShort} {
		t.Run(failure.Error(), func(t *testing.T) {
			f := newFake()
			obj := f.add("big", bs)
			f.fail = func(n int, id string, off int64, size int) error {
				if n == 3 { // one part of the first attempt
					return failure
				}
				return nil
			}
			c := newTestCache(t, f, splitOptions(t, 8, 4))
			p := make([]byte, bs)
			if _, err := c.ReadAt(context.Background(), obj, p, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, f.objects["big"]) {
				t.Fatal("wrong bytes after a failed part")
			}
			if st := c.Stats(); st.Retries != 1 || st.FetchErrors != 0 {
				t.Fatalf("%d retries, %d fetch errors; want 1, 0", st.Retries, st.FetchErrors)
			}
		})
	}
	t.Run("permanent", func(t *testing.T) {
		f := newFake()
		obj := f.add("big", bs)
		f.fail = func(n int, id string, off int64, size int) error {
			if off > 0 {
				return errNotFound
			}
			return nil
		}
		c := newTestCache(t, f, splitOptions(t, 8, 4))
		if _, err := c.ReadAt(context.Background(), obj, make([]byte, 10), 0); !errors.Is(err, errNotFound) {
			t.Fatalf("err %v, want not found", err)
		}
		if st := c.Stats(); st.InFlight != 0 || st.Retries != 0 {
			t.Fatalf("%d in flight, %d retries after a permanent failure", st.InFlight, st.Retries)
		}
	})
}

// A Reader's read-ahead blocks right after its read are split over idle slots too, nearest the most:
// at a cold start they would otherwise all arrive together, a whole block's transfer time later,
// while the reader waits. Blocks further ahead, Prefetch's, and a source's unsplittable objects are
// one request each.
func TestReadaheadSplitNearTheReader(t *testing.T) {
	const bs = 4 << 20
	tests := []struct {
		name     string
		split    int
		noSplit  bool
		prefetch bool
		want     map[int64]int // requests per block
	}{
		// The bulk read waits for block 0 (a miss: 4 parts); its window of startWindowBlocks plans
		// blocks 1..8: the four nearest in 4 parts, the next four in 2.
		{name: "cold bulk start", split: 4,
			want: map[int64]int{0: 4, 1: 4, 2: 4, 3: 4, 4: 4, 5: 2, 6: 2, 7: 2, 8: 2}},
		{name: "splitting off", split: 0,
			want: map[int64]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1}},
		{name: "source says no", split: 4, noSplit: true,
			want: map[int64]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1}},
		{name: "prefetch", split: 4, prefetch: true,
			want: map[int64]int{0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1, 8: 1, 9: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			obj := f.addQuick("big", 10*bs)
			opts := splitOptions(t, 64, tc.split) // slots for every part: the split is not limited by them
			opts.Readahead, opts.MemoryBytes = 64*bs, 256<<20
			var src Source = f
			if tc.noSplit {
				src = noSplit{f, map[string]bool{"big": true}}
			}
			c := newTestCache(t, src, opts)
			if tc.prefetch {
				c.Prefetch(obj)
			} else {
				r := c.NewReader(obj, "")
				defer r.Close()
				coldBulkRead(t, f, r, sum(tc.want))
			}
			settle(c)
			got := f.blockFetches("big", bs)
			if !maps.Equal(got, tc.want) {
				t.Fatalf("requests per block %v, want %v", got, tc.want)
			}
			if st := c.Stats(); st.Requests != int64(sum(tc.want)) || st.InFlight != 0 {
				t.Fatalf("stats: %d requests, %d in flight; want %d, 0", st.Requests, st.InFlight, sum(tc.want))
			}
		})
	}
}

// coldBulkRead makes a stream's first read (bulkRead at 0) with the fake's calls held until the read
// and its read-ahead have started calls all of them: no call is timed before the read-ahead is
// planned, as on a fresh mount, however fast the fake answers (see Cache.fastLink).
func coldBulkRead(t *testing.T, f *fakeSource, r *Reader, calls int) {
	t.Helper()
	f.gate = make(chan struct{})
	done := make(chan error, 1)
	p := make([]byte, bulkRead)
	go func() {
		_, err := r.ReadAt(context.Background(), p, 0)
		done <- err
	}()
	eventually(t, "the first plan's calls started", func() bool { return f.numCalls() == calls })
	close(f.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, f.objects["big"][:bulkRead]) {
		t.Fatal("wrong bytes")
	}
}

// On a fast link a cold stream's second plan, made as its first blocks arrive, splits the blocks 8 to
// 15 past the reader in two: fetched whole they arrived together, a whole block's transfer time
// later, while the reader, done with the first ring, waited. On a slow link, where the slots already
// limit the stream and each part costs a request's latency, they stay whole. Only the fake's rate
// differs between the rows: the cache tells the links apart by timing its calls.
func TestReadaheadSplitWiderOnAFastLink(t *testing.T) {
	const bs = 4 << 20
	tests := []struct {
		name  string
		bps   int64 // per call, 0: unlimited; 32 slots of 6 MiB/s carry half fastLinkRate
		parts int   // requests for each of blocks 9..16
	}{
		{name: "fast link", bps: 0, parts: 2},
		{name: "slow link", bps: 6 << 20, parts: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.bps = tc.bps
			obj := f.addQuick("big", 33*bs)
			opts := splitOptions(t, 32, 4) // slots for every part of the second plan
			opts.Readahead, opts.MemoryBytes = 64*bs, 512<<20
			c := newTestCache(t, f, opts)
			r := c.NewReader(obj, "")
			defer r.Close()
			// The first plan: block 0 (the read's) and blocks 1..8. Its calls time the link.
			if _, err := r.ReadAt(context.Background(), make([]byte, bulkRead), 0); err != nil {
				t.Fatal(err)
			}
			settle(c)
			f.reset()
			// Two more 1 MiB reads double the window twice: blocks 9..16 (8 to 15 past the
			// reader), then from 17 on as far as the fetch budget lets them.
			for off := int64(bulkRead); off < bulkRead+2<<20; off += 1 << 20 {
				if _, err := r.ReadAt(context.Background(), make([]byte, 1<<20), off); err != nil {
					t.Fatal(err)
				}
			}
			settle(c)
			got := f.blockFetches("big", bs)
			for i := int64(9); i <= 16; i++ {
				if got[i] != tc.parts {
					t.Fatalf("block %d in %d requests, want %d (requests per block %v)", i, got[i], tc.parts, got)
				}
			}
			for i, n := range got {
				if (i < 9 || i > 16) && n != 1 {
					t.Fatalf("block %d in %d requests, want 1 (requests per block %v)", i, n, got)
				}
			}
			if got[17] != 1 {
				t.Fatalf("no read-ahead past block 16: requests per block %v", got)
			}
		})
	}
}

// With fewer slots than the split read-ahead wants, the nearest blocks get them: the read's own block
// and the next ones each in four parts, in block order. Slots were once taken in the spans'
// goroutines, in whatever order the scheduler ran them, and far blocks started whole took the slots
// the near ones were to be split over.
func TestNearBlocksGetIdleSlotsFirst(t *testing.T) {
	const bs = 4 << 20
	for round := range 5 {
		f := newFake()
		f.gate = make(chan struct{})
		obj := f.add("big", 10*bs)
		opts := splitOptions(t, 12, 4)
		opts.Readahead, opts.MemoryBytes = 64*bs, 256<<20
		c := newTestCache(t, f, opts)
		r := c.NewReader(obj, "")
		done := make(chan error, 1)
		go func() {
			_, err := r.ReadAt(context.Background(), make([]byte, bulkRead), 0)
			done <- err
		}()
		eventually(t, "every slot busy", func() bool { return f.numCalls() == 12 })
		if got, want := f.blockFetches("big", bs), map[int64]int{0: 4, 1: 4, 2: 4}; !maps.Equal(got, want) {
			t.Fatalf("round %d: requests per block with the slots full %v, want %v", round, got, want)
		}
		close(f.gate)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		r.Close()
		settle(c)
		if m := f.maxInflight(); m > 12 {
			t.Fatalf("%d requests in flight, Parallel is 12", m)
		}
	}
}

func sum(m map[int64]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

// noSplit is the fake as a SplitSource that says no for the objects in its set.
type noSplit struct {
	*fakeSource
	no map[string]bool
}

func (n noSplit) Splittable(id string) bool { return !n.no[id] }

// A SplitSource decides per object: a block of an object it says no for (a file read through the API,
// whose requests count against a limit) is one request, even with every slot idle.
func TestMissNotSplitWhenSourceSaysNo(t *testing.T) {
	const bs = 4 << 20
	f := newFake()
	api, storage := f.add("api", bs), f.add("storage", bs)
	c := newTestCache(t, noSplit{f, map[string]bool{"api": true}}, splitOptions(t, 8, 4))
	for _, obj := range []Object{api, storage} {
		if _, err := c.ReadAt(context.Background(), obj, make([]byte, 10), 0); err != nil {
			t.Fatal(err)
		}
	}
	per := map[string]int{}
	for _, cl := range f.callList() {
		per[cl.id]++
	}
	if per["api"] != 1 || per["storage"] != 4 {
		t.Fatalf("requests per object %v, want api 1 (not splittable), storage 4", per)
	}
}
