package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// rootNode is the mount's root. Its children are fixed, so they are persistent inodes made in OnAdd:
//
//	jobs/  completed/  failed/  by-name/  files/  uploads/  .rescalefs/status
type rootNode struct {
	fusefs.Inode
	base
}

// staticDir is a fixed folder whose children are persistent inodes (the root's default listing and
// lookup serve them): .rescalefs/, and uploads/ until issue 4 makes it writable.
type staticDir struct {
	fusefs.Inode
	base
}

func (r *rootNode) OnAdd(ctx context.Context) {
	f := r.f
	dir := func(parent *fusefs.Inode, name string, ops fusefs.InodeEmbedder, n uint64) *fusefs.Inode {
		ch := parent.NewPersistentInode(ctx, ops, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: n})
		parent.AddChild(name, ch, false)
		return ch
	}
	f.jobsDir = dir(r.EmbeddedInode(), "jobs", &jobsDir{base: r.base}, inoJobs)
	f.completedDir = dir(r.EmbeddedInode(), "completed", &completedDir{base: r.base}, inoCompleted)
	f.failedDir = dir(r.EmbeddedInode(), "failed", &failedDir{base: r.base}, inoFailed)
	f.byNameDir = dir(r.EmbeddedInode(), "by-name", &byNameDir{base: r.base}, inoByName)
	dir(r.EmbeddedInode(), "files", &dirNode{base: r.base, ns: "lib"}, inoFiles)
	if f.io.up != nil {
		dir(r.EmbeddedInode(), "uploads", newUploadDir(r.base, f.io.up, 0o755, true), inoUploads) // uploads.go
	} else {
		dir(r.EmbeddedInode(), "uploads", &staticDir{base: r.base}, inoUploads) // no engine: read-only
	}
	meta := dir(r.EmbeddedInode(), ".rescalefs", &staticDir{base: r.base}, inoMeta)
	st := meta.NewPersistentInode(ctx, &statusFile{base: r.base}, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: inoStatus})
	meta.AddChild("status", st, false)
}

func (r *rootNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, r.f.mounted, 7)
	return 0
}

func (s *staticDir) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, s.f.mounted, 0)
	return 0
}

// jobsDir is jobs/: every job the key can see. A job id not in the last list is asked of the platform
// (a job submitted since the last poll); a missing one is ENOENT.
type jobsDir struct {
	fusefs.Inode
	base
}

func (d *jobsDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	info, err := d.f.findJob(ctx, name)
	if err != nil {
		return nil, d.f.errno("look up job "+name, err)
	}
	subdirs := -1
	if n := d.f.cachedTree(info.ID, nil); n != nil {
		subdirs = n.dirs
	}
	dirAttr(&out.Attr, info.StatusDate, subdirs)
	// The poller invalidates a job's entry when it changes, so the entry can live a poll interval.
	out.SetEntryTimeout(d.f.opts.Poll)
	out.SetAttrTimeout(liveTimeout)
	child := &dirNode{base: d.base, jobID: info.ID, ns: "dir"}
	return d.NewInode(ctx, child, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("job:" + info.ID)}), 0
}

func (d *jobsDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if err := d.f.loadJobs(ctx); err != nil {
		return nil, d.f.errno("list jobs", err)
	}
	jobs := d.f.model.list()
	entries := make([]fuse.DirEntry, 0, len(jobs))
	for _, j := range jobs {
		entries = append(entries, fuse.DirEntry{Name: j.ID, Mode: syscall.S_IFDIR, Ino: ino("job:" + j.ID)})
	}
	return fusefs.NewListDirStream(entries), 0
}

func (d *jobsDir) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.f.mounted, len(d.f.model.list()))
	return 0
}
