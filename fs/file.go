package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/remote"
)

// fileNode is an output file of a job, or a file of the library. A file id's bytes never change, so
// its attributes are cached long, its page cache is kept across opens, and its inode number is the
// id's.
type fileNode struct {
	fusefs.Inode
	base
	file  *remote.File
	jobID string // "" for a library file
	// dir and entry are the folder and the entry in the tree the file was looked up in, for the
	// read-ahead across files (walkahead.go); nil when unknown.
	dir, entry *node
}

func newFileNode(b base, f *remote.File, jobID string) (*fileNode, fusefs.StableAttr) {
	return &fileNode{base: b, file: f, jobID: jobID}, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: ino("file:" + f.ID)}
}

func (n *fileNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	fileAttr(&out.Attr, n.file)
	out.SetTimeout(immutableTimeout)
	return 0
}

// Open refuses anything but reading, and returns a handle reading through the block cache.
// FOPEN_KEEP_CACHE: the content is immutable, so what the kernel cached from an earlier open is
// still right and a re-read never leaves the page cache.
func (n *fileNode) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if errno := openReadOnly(flags); errno != 0 {
		return nil, 0, errno
	}
	n.f.stats.opens.Add(1)
	n.f.walk.opened(n.dir, n.entry)
	return &handle{f: n.f, node: n, r: n.f.newReader(n.file)}, fuse.FOPEN_KEEP_CACHE, 0
}

// openReadOnly refuses an open for anything but reading (EROFS).
func openReadOnly(flags uint32) syscall.Errno {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&(syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return syscall.EROFS
	}
	return 0
}

// Access: files are neither writable (EROFS) nor executable (mode 0444), whatever the caller.
func (n *fileNode) Access(_ context.Context, mask uint32) syscall.Errno { return fileAccess(mask) }

func fileAccess(mask uint32) syscall.Errno {
	switch {
	case mask&unix.W_OK != 0:
		return syscall.EROFS
	case mask&unix.X_OK != 0:
		return syscall.EACCES
	}
	return 0
}

func (n *fileNode) Getxattr(_ context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(fileXattrs(n.file, n.jobID), attr, dest)
}

func (n *fileNode) Listxattr(_ context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(fileXattrs(n.file, n.jobID), dest)
}
