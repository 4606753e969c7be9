package cache

import (
	"bytes"
	"context"
	"slices"
	"testing"
)

// The kernel sends a handle's reads concurrently, the first ones of a file too, so a stream's start
// arrives out of order. A read landing before the previous one (1 MiB, then 0) moved the Reader's
// next back: the stream was then taken for random reads until a read happened to land on next again,
// or, when it did at once (2 MiB, 0, then 1 MiB), read-ahead was planned from 2 MiB, behind the
// furthest read, and the blocks that read had fetched were fetched a second time. A reordered start
// is one stream whose read-ahead begins past its furthest read, and every block goes over the wire
// once; a backward scan is still no stream. The reads here are serialized in the kernel's order of
// arrival; the cache has no memory tier, so a block fetched twice shows in the Source's calls.
func TestReorderedStartIsOneStream(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name  string
		size  int64   // of each read
		offs  []int64 // in order of arrival
		ahead bool    // read-ahead past the furthest of them, before any read gets there
	}{
		{"in order", mib, []int64{0, mib, 2 * mib}, true},
		{"1 MiB before 0", mib, []int64{mib, 0, 2 * mib}, true},
		{"2 MiB before 0 and 1 MiB", mib, []int64{2 * mib, 0, mib}, true},
		{"3, 2, 0, then 1 MiB", mib, []int64{3 * mib, 2 * mib, 0, mib}, true},
		{"small reads, 128 KiB before 0", 128 << 10, []int64{128 << 10, 0, 256 << 10}, true},
		{"backwards, as tac reads", mib, []int64{3 * mib, 2 * mib, mib, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake()
			c := newReadaheadOnlyCache(t, src)
			obj := src.add("obj", 6*mib)
			r := c.NewReader(obj, "")
			defer r.Close()
			p := make([]byte, tc.size)
			var furthest int64
			for _, off := range tc.offs {
				if _, err := r.ReadAt(context.Background(), p, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p, src.objects[obj.ID][off:off+tc.size]) {
					t.Fatalf("read at %d: wrong bytes", off)
				}
				furthest = max(furthest, off+tc.size)
			}
			settle(c) // the read-ahead planned so far has arrived
			fetched := src.blockFetches(obj.ID, testBS)
			var twice []int64
			for idx, n := range fetched {
				if n != 1 {
					twice = append(twice, idx)
				}
			}
			if len(twice) > 0 {
				slices.Sort(twice)
				t.Errorf("after the reads at %v: blocks %v fetched more than once", tc.offs, twice)
			}
			if ahead := fetched[furthest/testBS] > 0; ahead != tc.ahead {
				t.Errorf("after the reads at %v: block %d (at %d, the furthest read's end) read ahead %v, want %v",
					tc.offs, furthest/testBS, furthest, ahead, tc.ahead)
			}
			if err := readFrom(r, furthest, obj.Size, int(tc.size)); err != nil {
				t.Fatal(err)
			}
			checkFetchedOnce(t, c, src, []Object{obj})
		})
	}
}
