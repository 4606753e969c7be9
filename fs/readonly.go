package fs

import (
	"context"
	"os"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/internal/names"
)

// base is embedded in every node. It holds the mount and answers, for everything outside uploads/,
// every modifying operation with EROFS. The interfaces must be implemented: a node without
// NodeUnlinker lets `rm` succeed silently, one without NodeSetattrer answers ENOTSUP, and users must see
// "Read-only file system" for each. It also answers statfs for every node (the kernel asks the node
// of the path given, not the root).
type base struct {
	f *fsys
}

func (base) Setattr(context.Context, fusefs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (base) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (base) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (base) Link(context.Context, fusefs.InodeEmbedder, string, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (base) Symlink(context.Context, string, string, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (base) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (base) Tmpfile(context.Context, uint32, uint32, *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (base) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }

func (base) Rmdir(context.Context, string) syscall.Errno { return syscall.EROFS }

func (base) Rename(context.Context, string, fusefs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}

func (base) Setxattr(context.Context, string, []byte, uint32) syscall.Errno { return syscall.EROFS }

func (base) Removexattr(context.Context, string) syscall.Errno { return syscall.EROFS }

// Access refuses write access (so `test -w` and access(2) tell the truth) and grants the rest: modes
// are 0444/0555, and the kernel checks them itself only with default_permissions.
func (base) Access(_ context.Context, mask uint32) syscall.Errno {
	if mask&unix.W_OK != 0 {
		return syscall.EROFS
	}
	return 0
}

// Statfs reports the disk of the cache directory: the space that matters to a user of the mount
// (staging for uploads, the disk tier), so df and file managers show something sane.
func (b base) Statfs(_ context.Context, out *fuse.StatfsOut) syscall.Errno {
	dir := b.f.opts.CacheDir
	if dir == "" {
		dir = os.TempDir() // as Options.CacheDir documents
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		out.NameLen = names.MaxLen
		out.Bsize = 4096
		out.Frsize = 4096
		return 0
	}
	out.FromStatfsT(&st)
	out.NameLen = names.MaxLen
	return 0
}
