package fs

import (
	"strings"
	"sync"
)

// A filter folder "@<text>" is the Transfer Manager's filter as a path: looked up in a folder it is the
// same subtree holding only files whose name contains <text> (plain, case-sensitive substring, no
// globs), with folders that hold no match pruned. It is lookup-only: never in readdir, so cp -r, find
// and du never recurse into it. A real child named "@x" wins over the filter.

// filterText returns the text of a filter folder name, ok false when name is not one. A bare "@" is not
// a filter: it would match everything and only hide typos.
func filterText(name string) (text string, ok bool) {
	if len(name) < 2 || name[0] != '@' {
		return "", false
	}
	return name[1:], true
}

// matches says whether a file node is selected by a filter: its shown name, or its API name (which
// differs when the name had to be sanitised or deduplicated), contains text.
func matches(n *node, text string) bool {
	if strings.Contains(n.name, text) {
		return true
	}
	return n.file != nil && n.file.Name != "" && strings.Contains(n.file.Name, text)
}

// filterTree returns a copy of directory n that holds only the files matching text, in the same folders;
// folders with no match are left out. File nodes are shared with n (they are immutable). The result is
// itself a directory, possibly empty.
func filterTree(n *node, text string) *node {
	out := newDir(n.name)
	for _, c := range n.list {
		if c.isDir() {
			if sub := filterTree(c, text); sub.files > 0 {
				out.children[c.name] = sub
			}
		} else if matches(c, text) {
			out.children[c.name] = c
		}
	}
	out.finish()
	return out
}

// filterMemo keeps recent filtered trees so that every FUSE operation inside one "@text" folder does
// not refilter a 10,000-file job. Keys hold the source tree node itself: trees are immutable, so a
// key never goes stale, and a replaced tree (a running job's) simply stops being asked for.
//
// It is bounded by the files it keeps alive, source trees included (a key keeps its whole job
// listing alive, even one the listings' LRU has dropped): a readdir of completed/@x/ filters every
// completed job, and an entry bound alone (it was 256 entries) kept 120 jobs of 2,500 files, 676 MiB.
type filterMemo struct {
	mu    sync.Mutex // protects m, files
	m     map[filterKey]*node
	files int // files of the source and filtered trees in m
}

type filterKey struct {
	n    *node
	text string
}

// maxFilterMemo bounds the memo's entries and maxFilterMemoFiles the files they keep alive (about
// 1.2 KiB each: 24 MiB; one larger tree is kept alone); on overflow it is emptied, which only costs
// refiltering.
const (
	maxFilterMemo      = 256
	maxFilterMemoFiles = 20_000
)

func (fm *filterMemo) get(n *node, text string) *node {
	k := filterKey{n, text}
	fm.mu.Lock()
	if t, ok := fm.m[k]; ok {
		fm.mu.Unlock()
		return t
	}
	fm.mu.Unlock()
	t := filterTree(n, text) // outside the lock: filtering a big tree takes a while
	cost := n.files + t.files
	fm.mu.Lock()
	if fm.m == nil || len(fm.m) >= maxFilterMemo || fm.files+cost > maxFilterMemoFiles {
		fm.m, fm.files = make(map[filterKey]*node), 0
	}
	if _, dup := fm.m[k]; !dup { // one tree larger than the bound is kept alone
		fm.m[k] = t
		fm.files += cost
	}
	fm.mu.Unlock()
	return t
}

// resolve walks a view path from root: each component is a real child, or else a filter folder
// applied to the folder reached so far. It returns nil when the path does not exist (any more).
func (fm *filterMemo) resolve(root *node, vpath []string) *node {
	n := root
	for _, c := range vpath {
		if n == nil || !n.isDir() {
			return nil
		}
		if ch := n.child(c); ch != nil {
			n = ch
			continue
		}
		text, ok := filterText(c)
		if !ok {
			return nil
		}
		n = fm.get(n, text)
	}
	return n
}
