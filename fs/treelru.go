package fs

import "container/list"

// Completed jobs' listings are final, so they used to be kept for the life of the mount: a readdir of
// completed/@x/ lists every completed job and kept every job's files. They are now kept in LRU order
// within a bound on the files they hold; a listing dropped is fetched again (one JobFiles request)
// when next needed. A running job's listing is not counted: it is refetched every few seconds anyway
// and holds the live files' state.
//
// DefaultMaxTreeFiles is the bound. A file costs about 1.2 KiB in a listing (its node, its remote.File
// and the strings they hold: BenchmarkTreeMemory measured 1213 B/file over 20,000 files), so the bound
// is about 120 MiB. A job larger than the bound is kept alone (the 100,000-file job of the soak fits).
const DefaultMaxTreeFiles = 100_000

// treeLRU is the jobsModel's order of final listings. Guarded by jobsModel.mu, like the jobTree fields
// elem and counted.
type treeLRU struct {
	max   int        // files; <= 0 = DefaultMaxTreeFiles
	order *list.List // *jobTree, most recently used first
	files int        // files held by the trees in order
}

// keepTree records t, final with n files, as the most recently used listing and returns the trees to
// drop to stay within the bound (the caller drops them with dropTrees, holding no lock).
func (m *jobsModel) keepTree(t *jobTree, n int) []*jobTree {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := &m.lru
	if l.order == nil {
		l.order = list.New()
	}
	if t.elem != nil {
		l.order.Remove(t.elem)
		l.files -= t.counted
	}
	t.elem, t.counted = l.order.PushFront(t), n
	l.files += n
	max := l.max
	if max <= 0 {
		max = DefaultMaxTreeFiles
	}
	var drop []*jobTree
	for l.files > max && l.order.Len() > 1 {
		v := l.order.Remove(l.order.Back()).(*jobTree)
		l.files -= v.counted
		v.elem, v.counted = nil, 0
		drop = append(drop, v)
	}
	return drop
}

// touchTree marks t's listing as just used.
func (m *jobsModel) touchTree(t *jobTree) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.elem != nil {
		m.lru.order.MoveToFront(t.elem)
	}
}

// treeFiles is the number of files held by final listings.
func (m *jobsModel) treeFiles() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.files
}

// dropTrees forgets the listings of trees evicted by keepTree; the next access refetches them.
func dropTrees(ts []*jobTree) {
	for _, t := range ts {
		t.mu.Lock()
		if t.final {
			t.root, t.final = nil, false
		}
		t.mu.Unlock()
	}
}
