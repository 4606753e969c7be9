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

// Small reads scattered near a stream's end are not the stream's: the kernel's reads of one stream
// arrive out of order only by a few reads' length, so a reordered read counts as sequential only that
// close to where the stream ends (up to maxReorder for the largest reads). With the reorder distance
// fixed at 4 MiB, a file sniffed in two adjacent small reads (a header, then the next page) and then
// read at random within 4 MiB of them doubled the read-ahead window on every read: each 4 KiB read
// fetched more blocks ahead, up to the whole Readahead. The scattered reads here fetch only their
// own blocks, and the stream's one block of read-ahead. (No block is read twice: the cache here keeps
// none but the Reader's last two.)
func TestScatteredSmallReadsDoNotGrowAStream(t *testing.T) {
	const kib = 1 << 10
	for _, tc := range []struct {
		name string
		offs []int64 // 4 KiB reads after the two of the sniff, at 0 and 4 KiB
	}{
		{"ahead of the stream", []int64{1024 * kib, 300 * kib, 2560 * kib, 700 * kib, 3990 * kib, 2048 * kib}},
		{"behind the stream's furthest read", []int64{3990 * kib, 100 * kib, 1024 * kib, 1500 * kib, 2048 * kib}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake()
			c := newReadaheadOnlyCache(t, src)
			obj := src.add("obj", 16<<20)
			r := c.NewReader(obj, "")
			defer r.Close()
			p := make([]byte, 4*kib)
			want := map[int64]bool{0: true, 1: true} // the sniff's block and its one block of read-ahead
			for _, off := range append([]int64{0, 4 * kib}, tc.offs...) {
				if _, err := r.ReadAt(context.Background(), p, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p, src.objects[obj.ID][off:off+int64(len(p))]) {
					t.Fatalf("read at %d: wrong bytes", off)
				}
				want[off/testBS] = true
			}
			settle(c)
			var extra []int64
			for idx := range src.blockFetches(obj.ID, testBS) {
				if !want[idx] {
					extra = append(extra, idx)
				}
			}
			slices.Sort(extra)
			if len(extra) > 0 {
				t.Errorf("blocks %v fetched besides the reads' own and one block of read-ahead (window now %d KiB)",
					extra, r.Window()/kib)
			}
			checkBlocksFetchedOnce(t, src, obj)
		})
	}
}
