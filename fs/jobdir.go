package fs

import (
	"context"
	"slices"
	"strings"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// dirNode is a folder of a file tree: a job folder (jobs/<id>/) or one below it, a filter folder
// (@text) anywhere in it, a job under completed/@text/, or files/ and its filter folders.
//
// It holds a path, not a tree node: each operation resolves the path in the job's current tree, so a
// running job's listing can be replaced (and a completed one fetched afresh) without stale nodes.
// Resolving is a few map lookups; filtered trees are memoised.
type dirNode struct {
	fusefs.Inode
	base
	jobID string   // "" = the library (files/)
	vpath []string // components below the tree's root, "@text" filter folders included
	ns    string   // inode namespace: "dir" (jobs/), "cdir" (completed/@text/), "lib" (files/)
}

func (d *dirNode) library() bool { return d.jobID == "" }

// jobTop says whether this folder stands for the job itself (its mtime and xattrs are the job's).
func (d *dirNode) jobTop() bool {
	return !d.library() && (len(d.vpath) == 0 || d.ns == "cdir" && len(d.vpath) == 1)
}

func (d *dirNode) inoOf(vpath []string) uint64 {
	switch {
	case d.ns == "dir" && len(vpath) == 0:
		return ino("job:" + d.jobID)
	case d.library():
		return ino("lib:/" + strings.Join(vpath, "/"))
	}
	return ino(d.ns + ":" + d.jobID + "/" + strings.Join(vpath, "/"))
}

// tree resolves this folder in the current tree. final says the tree is a completed job's (immutable
// for the life of the mount: the kernel may cache it long).
func (d *dirNode) tree(ctx context.Context) (n *node, final bool, errno syscall.Errno) {
	var root *node
	var err error
	if d.library() {
		root, err = d.f.libraryFiles(ctx)
	} else {
		root, final, err = d.f.jobFiles(ctx, d.jobID)
	}
	if err != nil {
		return nil, false, d.f.errno("list "+d.describe(), err)
	}
	n = d.f.memo.resolve(root, d.vpath)
	if n == nil || !n.isDir() {
		return nil, false, syscall.ENOENT
	}
	return n, final, 0
}

func (d *dirNode) describe() string {
	if d.library() {
		return "files/" + strings.Join(d.vpath, "/")
	}
	return "jobs/" + d.jobID + "/" + strings.Join(d.vpath, "/")
}

func timeouts(out *fuse.EntryOut, final bool) {
	t := liveTimeout
	if final {
		t = immutableTimeout
	}
	out.SetEntryTimeout(t)
	out.SetAttrTimeout(t)
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	n, final, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	c := n.child(name)
	if c == nil {
		text, ok := filterText(name)
		if !ok {
			return nil, syscall.ENOENT
		}
		// A filter folder exists even with no match (so `cp -r @x/ dest` copies nothing rather than
		// failing); inside it, folders without a match are pruned.
		c = d.f.memo.get(n, text)
	}
	if c.live != nil {
		// A running job's live file: its entry is short-lived (the run's listing changes), its
		// attributes are never cached (it grows).
		ln, attr := newLiveNode(d.base, c.live)
		c.live.fillAttr(&out.Attr)
		out.SetEntryTimeout(liveTimeout)
		out.SetAttrTimeout(noCache)
		return d.NewInode(ctx, ln, attr), 0
	}
	if !c.isDir() {
		fn, attr := newFileNode(d.base, c.file, d.jobID)
		fn.dir, fn.entry = n, c
		fileAttr(&out.Attr, c.file)
		timeouts(out, final)
		out.SetAttrTimeout(immutableTimeout) // a file id's attributes never change
		return d.NewInode(ctx, fn, attr), 0
	}
	vpath := append(slices.Clone(d.vpath), name)
	child := &dirNode{base: d.base, jobID: d.jobID, vpath: vpath, ns: d.ns}
	mtime := c.mtime
	if mtime.IsZero() {
		mtime = d.f.mounted
	}
	dirAttr(&out.Attr, mtime, c.dirs)
	timeouts(out, final)
	return d.NewInode(ctx, child, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: d.inoOf(vpath)}), 0
}

// Readdir lists the real children only: filter folders are lookup-only.
func (d *dirNode) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	n, _, errno := d.tree(ctx)
	if errno != 0 {
		return nil, errno
	}
	d.f.walk.listed(n)
	entries := make([]fuse.DirEntry, 0, len(n.list))
	for _, c := range n.list {
		if c.isDir() {
			vpath := append(slices.Clone(d.vpath), c.name)
			entries = append(entries, fuse.DirEntry{Name: c.name, Mode: syscall.S_IFDIR, Ino: d.inoOf(vpath)})
		} else if c.live != nil {
			entries = append(entries, fuse.DirEntry{Name: c.name, Mode: syscall.S_IFREG, Ino: c.live.ino()})
		} else {
			entries = append(entries, fuse.DirEntry{Name: c.name, Mode: syscall.S_IFREG, Ino: ino("file:" + c.file.ID)})
		}
	}
	return fusefs.NewListDirStream(entries), 0
}

func (d *dirNode) Getattr(ctx context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if d.jobTop() {
		info, err := d.f.jobStatuses(ctx, d.jobID)
		if err != nil && info.ID == "" {
			return d.f.errno("status of job "+d.jobID, err)
		}
		// The tree only when already fetched: `ls -l jobs/` must not list every job's files.
		subdirs := -1
		if n := d.f.cachedTree(d.jobID, d.vpath); n != nil {
			subdirs = n.dirs
		}
		dirAttr(&out.Attr, info.StatusDate, subdirs)
		if info.Completed {
			out.SetTimeout(immutableTimeout)
		} else {
			out.SetTimeout(liveTimeout)
		}
		return 0
	}
	n, final, errno := d.tree(ctx)
	if errno != 0 {
		return errno
	}
	mtime := n.mtime
	if mtime.IsZero() { // an empty folder (an empty library, a filter without match)
		mtime = d.f.mounted
	}
	dirAttr(&out.Attr, mtime, n.dirs)
	if final {
		out.SetTimeout(immutableTimeout)
	}
	return 0
}

func (d *dirNode) xattrs() []xattr {
	if d.library() {
		return nil
	}
	if d.jobTop() {
		if info, ok := d.f.model.get(d.jobID); ok {
			return jobXattrs(info)
		}
	}
	if n := d.f.cachedTree(d.jobID, d.vpath); n != nil && len(n.xattrs) > 0 {
		return append([]xattr{{"job", d.jobID}}, n.xattrs...)
	}
	return []xattr{{"job", d.jobID}}
}

func (d *dirNode) Getxattr(_ context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(d.xattrs(), attr, dest)
}

func (d *dirNode) Listxattr(_ context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(d.xattrs(), dest)
}

// cachedTree resolves vpath in a job's tree if it has been fetched already, without fetching.
func (f *fsys) cachedTree(jobID string, vpath []string) *node {
	t := f.model.treeFor(jobID)
	t.mu.Lock()
	root := t.root
	t.mu.Unlock()
	if root == nil {
		return nil
	}
	return f.memo.resolve(root, vpath)
}
