package fs

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// walkFolder makes a folder of n files named f000.. in listing order, of the sizes size(i) gives.
func walkFolder(name string, n int, size func(i int) int64) *node {
	d := &node{name: name, children: map[string]*node{}}
	for i := range n {
		c := &node{name: fmt.Sprintf("f%03d", i), file: &remote.File{ID: fmt.Sprintf("%s-%03d", name, i), DecryptedSize: size(i)}}
		d.children[c.name] = c
		d.list = append(d.list, c)
	}
	return d
}

// walkRecorder drives a walkAhead and records what it fetched. The inode order is the listing order
// reversed, so the two orders differ.
type walkRecorder struct {
	w        *walkAhead
	fetched  []string       // file ids, in fetch order
	at       map[string]int // file id -> number of opens before it was fetched
	opens    int
	openedAt map[string]bool // opened before it was fetched
	clock    time.Time       // the policy's clock; each open advances it a millisecond
}

func newWalkRecorder(o WalkAheadOptions) *walkRecorder {
	r := &walkRecorder{at: map[string]int{}, openedAt: map[string]bool{}, clock: time.Unix(1e9, 0)}
	inoOf := func(n *node) uint64 {
		var i uint64
		fmt.Sscanf(n.name, "f%d", &i)
		return 1000 - i
	}
	r.w = newWalkAhead(o, inoOf, func(f *remote.File) {
		r.fetched = append(r.fetched, f.ID)
		r.at[f.ID] = r.opens
	}, func() time.Time { return r.clock })
	return r
}

func (r *walkRecorder) open(dir *node, i int) {
	n := dir.list[i]
	r.opens++
	r.clock = r.clock.Add(time.Millisecond)
	if _, ok := r.at[n.file.ID]; !ok {
		r.openedAt[n.file.ID] = true
	}
	r.w.opened(dir, n)
}

func small(int) int64 { return 1000 }

func TestWalkAheadPolicy(t *testing.T) {
	const n = 100
	ascending := make([]int, n)
	for i := range ascending {
		ascending[i] = i
	}
	descending := slices.Clone(ascending)
	slices.Reverse(descending)
	tests := []struct {
		name    string
		opts    WalkAheadOptions
		size    func(int) int64
		opens   []int
		fetched int // files fetched in all
		// notAhead: how many distinct opened files were not fetched before their open (a walk's first two)
		notAhead int
	}{
		{name: "listing order (tar, rsync)", opens: ascending, size: small, fetched: n - 2, notAhead: 2},
		{name: "inode order (cp -r)", opens: descending, size: small, fetched: n - 2, notAhead: 2},
		{name: "one random open", opens: []int{57}, size: small, fetched: 0, notAhead: 1},
		{name: "scattered opens", opens: []int{57, 3, 90, 12, 44, 71}, size: small, fetched: 0, notAhead: 6},
		{name: "the same file twice", opens: []int{5, 5, 5}, size: small, fetched: 0, notAhead: 1},
		{name: "a walk that skips files follows on", opens: []int{0, 1, 2, 5, 9, 10, 11}, size: small,
			opts: WalkAheadOptions{Files: 4}, fetched: 14, notAhead: 2},
		{name: "large files are left to their own read-ahead", opens: ascending[:10],
			size: func(i int) int64 { return int64(1+i%2) << 20 }, opts: WalkAheadOptions{SmallFile: 1 << 20},
			fetched: 32 + 4, notAhead: 2 + 4}, // 32 ahead, 4 more as 2..8 are opened; the odd files (2 MiB) are not fetched
		{name: "disabled", opens: ascending, size: small, opts: WalkAheadOptions{Files: -1}, fetched: 0, notAhead: n},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := walkFolder("d", n, tc.size)
			r := newWalkRecorder(tc.opts)
			for _, i := range tc.opens {
				r.open(dir, i)
			}
			if len(r.fetched) != tc.fetched {
				t.Errorf("fetched %d files %v, want %d", len(r.fetched), r.fetched, tc.fetched)
			}
			seen := map[string]bool{}
			for _, id := range r.fetched {
				if seen[id] {
					t.Errorf("%s fetched twice", id)
				}
				seen[id] = true
			}
			if len(r.openedAt) != tc.notAhead {
				t.Errorf("%d opened files were not fetched ahead, want %d", len(r.openedAt), tc.notAhead)
			}
		})
	}
}

// TestWalkAheadBounds: what is fetched and not yet opened stays within Files and Bytes, and every
// file the walk opens was fetched ahead once the walk is recognised.
func TestWalkAheadBounds(t *testing.T) {
	for _, o := range []WalkAheadOptions{{Files: 8}, {Files: 64, Bytes: 20_000}, {Files: 1}} {
		t.Run(fmt.Sprintf("%d files %d bytes", o.Files, o.Bytes), func(t *testing.T) {
			dir := walkFolder("d", 200, func(i int) int64 { return int64(500 + i*7%1000) })
			r := newWalkRecorder(o)
			for i := range dir.list {
				r.open(dir, i)
				st := r.w.stats()
				wantFiles, wantBytes := o.Files, r.w.o.Bytes
				if st.Files > wantFiles || st.Bytes > wantBytes {
					t.Fatalf("after open %d: %d files, %d bytes ahead; bounds %d, %d", i, st.Files, st.Bytes, wantFiles, wantBytes)
				}
				if ahead := len(r.fetched) - i + 1; i >= 1 && ahead > wantFiles {
					t.Fatalf("after open %d: %d files fetched beyond the opens", i, ahead)
				}
			}
			if len(r.openedAt) != 2 {
				t.Errorf("%d files opened before they were fetched, want the first 2", len(r.openedAt))
			}
			if st := r.w.stats(); st.Files != 0 || st.Bytes != 0 {
				t.Errorf("after the walk: %+v still ahead", st)
			}
		})
	}
}

// TestWalkAheadStopsWhenTheWalkDoes: a walk that jumps elsewhere fetches nothing more, and its
// files fetched ahead no longer count against the bounds.
func TestWalkAheadStopsWhenTheWalkDoes(t *testing.T) {
	dir := walkFolder("d", 100, small)
	r := newWalkRecorder(WalkAheadOptions{Files: 8})
	for i := range 5 {
		r.open(dir, i)
	}
	before := len(r.fetched)
	if before == 0 {
		t.Fatal("a walk of 5 files fetched nothing ahead")
	}
	r.open(dir, 60) // a jump: the program does something else
	r.open(dir, 30)
	if len(r.fetched) != before {
		t.Errorf("fetched %v after the walk stopped", r.fetched[before:])
	}
	if st := r.w.stats(); st.Files != 0 {
		t.Errorf("%d files still count as ahead after the walk stopped", st.Files)
	}
	// A new walk from there is recognised again.
	r.open(dir, 31)
	if len(r.fetched) == before {
		t.Error("a new walk (30, 31) fetched nothing ahead")
	}
}

// TestWalkAheadAcrossFolders: once a folder has been walked, the first file of the next folder in the
// walk's order starts the next walk at once (cp -r going from one folder to the next); a first file
// opened without a walk before does not.
func TestWalkAheadAcrossFolders(t *testing.T) {
	a, b := walkFolder("a", 20, small), walkFolder("b", 20, small)
	r := newWalkRecorder(WalkAheadOptions{Files: 4})
	r.open(b, 0) // nothing walked before: a lone open
	if len(r.fetched) != 0 {
		t.Fatalf("a lone open of a first file fetched %v", r.fetched)
	}
	c := walkFolder("c", 20, small)
	for i := 19; i >= 0; i-- { // a in inode order
		r.open(a, i)
	}
	n := len(r.fetched)
	r.open(c, 19) // c's first file in inode order
	if got := r.fetched[n:]; len(got) != 4 || got[0] != "c-018" {
		t.Errorf("entering c fetched %v, want c-018 and the 3 before it", got)
	}
}

// TestWalkAheadCarryOverIsPrompt: the first file of a folder continues a walk only right after it; the
// same open a while later is a lone open and fetches nothing else.
func TestWalkAheadCarryOverIsPrompt(t *testing.T) {
	a, b := walkFolder("a", 10, small), walkFolder("b", 10, small)
	r := newWalkRecorder(WalkAheadOptions{Files: 4})
	for i := range a.list {
		r.open(a, i)
	}
	n := len(r.fetched)
	r.clock = r.clock.Add(time.Minute)
	r.open(b, 0)
	if got := r.fetched[n:]; len(got) != 0 {
		t.Errorf("a first file opened a minute after a walk fetched %v", got)
	}
}

// TestWalkAheadInterruptedWalkDoesNotBlock: a walk stopped half-way (cp interrupted) leaves files
// fetched ahead that will never be opened; the next walk, elsewhere, still fetches ahead at once.
func TestWalkAheadInterruptedWalkDoesNotBlock(t *testing.T) {
	a, b := walkFolder("a", 50, small), walkFolder("b", 50, small)
	r := newWalkRecorder(WalkAheadOptions{Files: 8})
	for i := range 5 {
		r.open(a, i)
	}
	if st := r.w.stats(); st.Files != 8 {
		t.Fatalf("%d files ahead in a, want 8", st.Files)
	}
	r.clock = r.clock.Add(time.Minute)
	n := len(r.fetched)
	r.open(b, 10)
	r.open(b, 11)
	if got := len(r.fetched) - n; got != 8 {
		t.Errorf("a walk of b after an interrupted walk of a fetched %d files ahead, want 8", got)
	}
}

// TestWalkAheadListingTheNextFolder: a folder listed right after a walk (cp -r listing the next folder
// before opening its files) has its first file, in the walk's order, fetched at once; listed without a
// walk before, or listed again, nothing.
func TestWalkAheadListingTheNextFolder(t *testing.T) {
	a, b, c := walkFolder("a", 10, small), walkFolder("b", 10, small), walkFolder("c", 10, small)
	r := newWalkRecorder(WalkAheadOptions{Files: 4})
	r.w.listed(c) // no walk yet
	if len(r.fetched) != 0 {
		t.Fatalf("listing with no walk fetched %v", r.fetched)
	}
	for i := 9; i >= 0; i-- { // a in inode order
		r.open(a, i)
	}
	n := len(r.fetched)
	r.w.listed(b)
	r.w.listed(b)
	if got := r.fetched[n:]; len(got) != 1 || got[0] != "b-009" {
		t.Fatalf("listing b after a walk fetched %v, want b-009 (its first file in inode order) once", got)
	}
	r.open(b, 9)
	if _, early := r.openedAt["b-009"]; early {
		t.Error("b's first file was opened before it was fetched")
	}
	if got := r.fetched[n+1:]; len(got) != 4 || got[0] != "b-008" {
		t.Errorf("opening b's first file fetched %v, want b-008 and the 3 before it", got)
	}
}
