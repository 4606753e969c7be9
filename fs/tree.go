package fs

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

// node is one entry of a job's file tree: a file (file != nil), a live file of a running job
// (live != nil), or a directory. A tree is immutable once
// built: a completed job's tree is shared by every reader for the life of the mount, and a running job's
// tree is replaced as a whole, never changed in place, so readers need no lock.
type node struct {
	name     string
	file     *remote.File     // nil for a directory
	live     *liveFile        // a running job's live file (live.go); nil otherwise
	children map[string]*node // directories: by name
	list     []*node          // directories: children sorted by name, the readdir order
	mtime    time.Time        // file: dateUploaded; directory: the newest file below
	files    int              // directories: files below, at any depth
	dirs     int              // directories: direct sub-directories (for st_nlink)
	bytes    int64            // file: its size; directory: the sum of the files below
	xattrs   []xattr          // a run's folder (runs.go): the run's id and variables
}

func (n *node) isDir() bool { return n.file == nil && n.live == nil }

// child returns the direct child called name, or nil.
func (n *node) child(name string) *node {
	if n == nil || n.children == nil {
		return nil
	}
	return n.children[name]
}

// treeNote reports one name the tree had to change: a sanitised path or a duplicate. The caller logs
// each once.
type treeNote struct {
	FileID   string
	Original string // the relativePath as the API gave it
	Name     string // the path used in the tree
	Reason   string
}

// buildTree makes the directory tree of a job's files from their relativePaths. Only uploaded,
// undeleted files are real outputs. Untrusted paths are cleaned (see names.SplitRelPath); when two files map
// to one path, or a file's path is also a folder's, the result is still deterministic whatever order the
// API listed them in: folders keep their names, then among files of one path the newest (then the
// smallest id) keeps it and the others get "~<id>" before their extension.
func buildTree(files []remote.File) (*node, []treeNote) {
	type item struct {
		f     *remote.File
		comps []string
		key   string
	}
	items := make([]item, 0, len(files))
	var notes []treeNote
	seen := make(map[string]bool, len(files))
	for i := range files {
		f := &files[i]
		if !f.IsUploaded || f.IsDeleted || seen[f.ID] {
			continue // not a real output, or listed twice (pages shifting under a paged listing)
		}
		seen[f.ID] = true
		comps := names.SplitRelPath(f.RelativePath)
		if len(comps) == 0 {
			// No usable relativePath: fall back to the name, then the id.
			n := f.Name
			if n == "" {
				n = "file-" + f.ID
			}
			comps = []string{names.Sanitize(n)}
		}
		key := strings.Join(comps, "/")
		if key != f.RelativePath && key != strings.TrimPrefix(f.RelativePath, "./") && !(f.RelativePath == "" && key == f.Name) {
			notes = append(notes, treeNote{FileID: f.ID, Original: f.RelativePath, Name: key, Reason: "unsafe path"})
		}
		items = append(items, item{f: f, comps: comps, key: key})
	}
	slices.SortFunc(items, func(a, b item) int {
		return names.CompareClaims(names.Claim{Path: a.key, Uploaded: a.f.DateUploaded.Time, ID: a.f.ID},
			names.Claim{Path: b.key, Uploaded: b.f.DateUploaded.Time, ID: b.f.ID})
	})

	// Folders first: every prefix of every path is a folder, and keeps its name.
	root := newDir("")
	for _, it := range items {
		root.mkdirs(it.comps[:len(it.comps)-1])
	}
	// Then the files, in the sorted order; a taken name gets the file id as a suffix.
	for _, it := range items {
		d := root.walk(it.comps[:len(it.comps)-1])
		name := it.comps[len(it.comps)-1]
		if d.children[name] != nil {
			orig := name
			name = names.WithSuffix(orig, it.f.ID)
			for i := 2; d.children[name] != nil; i++ {
				name = names.WithSuffix(orig, it.f.ID+"-"+strconv.Itoa(i))
			}
			notes = append(notes, treeNote{FileID: it.f.ID, Original: it.f.RelativePath,
				Name: strings.Join(append(slices.Clone(it.comps[:len(it.comps)-1]), name), "/"), Reason: "duplicate name"})
		}
		d.children[name] = &node{name: name, file: it.f, mtime: it.f.DateUploaded.Time, bytes: it.f.DecryptedSize}
	}
	root.finish()
	return root, notes
}

func newDir(name string) *node { return &node{name: name, children: map[string]*node{}} }

// mkdirs makes the folders of path comps below directory n, as far as they do not exist, while a tree
// is built, and returns the last.
func (n *node) mkdirs(comps []string) *node {
	for _, c := range comps {
		next := n.children[c]
		if next == nil {
			next = newDir(c)
			n.children[c] = next
		}
		n = next
	}
	return n
}

// finish computes the sorted child lists and the aggregates, bottom up.
func (n *node) finish() {
	n.list = make([]*node, 0, len(n.children))
	n.files, n.dirs, n.bytes = 0, 0, 0
	for _, c := range n.children {
		if c.isDir() {
			c.finish()
			n.dirs++
			n.files += c.files
		} else {
			n.files++
		}
		n.bytes += c.bytes
		if c.mtime.After(n.mtime) {
			n.mtime = c.mtime
		}
		n.list = append(n.list, c)
	}
	slices.SortFunc(n.list, func(a, b *node) int { return cmp.Compare(a.name, b.name) })
}

// walk resolves a path of components below n, each a real child. nil when any is missing.
func (n *node) walk(comps []string) *node {
	for _, c := range comps {
		n = n.child(c)
		if n == nil {
			return nil
		}
	}
	return n
}
