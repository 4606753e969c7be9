package fs

import (
	"context"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// symlinkNode is an entry of completed/ or by-name/: a relative link to the job's folder, so it stays
// right wherever the mount is.
type symlinkNode struct {
	fusefs.Inode
	base
	target string
	mtime  time.Time
}

func (s *symlinkNode) Readlink(context.Context) ([]byte, syscall.Errno) { return []byte(s.target), 0 }

func (s *symlinkNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	linkAttr(&out.Attr, s.target, s.mtime)
	return 0
}

// jobLink makes the symlink inode for job j under one of the link folders. Its mtime is the job's
// completion date under completed/ and failed/ (so `ls -lt completed/` lists jobs as they finish),
// its latest status date under by-name/.
func jobLink(ctx context.Context, parent *fusefs.Inode, b base, kind string, j jobInfo, out *fuse.EntryOut) *fusefs.Inode {
	mtime := j.StatusDate
	if kind != "by-name" && !j.CompletedAt.IsZero() {
		mtime = j.CompletedAt
	}
	s := &symlinkNode{base: b, target: "../jobs/" + j.ID, mtime: mtime}
	linkAttr(&out.Attr, s.target, s.mtime)
	// The poller invalidates these entries when the job list changes.
	out.SetEntryTimeout(b.f.opts.Poll)
	out.SetAttrTimeout(liveTimeout)
	return parent.NewInode(ctx, s, fusefs.StableAttr{Mode: syscall.S_IFLNK, Ino: ino("link:" + kind + ":" + j.ID)})
}

// completedDir is completed/: a symlink per job completed within MaxJobAge, newest first (ls -t order
// is the mtime, the job's latest status date). completed/@text/ holds, for each such job with a
// matching file, its tree filtered by text.
type completedDir struct {
	fusefs.Inode
	base
}

func (f *fsys) completedJobs(ctx context.Context) ([]jobInfo, error) {
	if err := f.loadJobs(ctx); err != nil {
		return nil, err
	}
	return completedJobs(f.model.list(), f.opts.MaxJobAge, f.now()), nil
}

func (d *completedDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if text, ok := filterText(name); ok {
		dirAttr(&out.Attr, d.f.mounted, -1)
		ch := &completedFilterDir{base: d.base, text: text}
		return d.NewInode(ctx, ch, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: ino("cfilter:" + text)}), 0
	}
	jobs, err := d.f.completedJobs(ctx)
	if err != nil {
		return nil, d.f.errno("list completed jobs", err)
	}
	for _, j := range jobs {
		if j.ID == name {
			return jobLink(ctx, d.EmbeddedInode(), d.base, "completed", j, out), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *completedDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	jobs, err := d.f.completedJobs(ctx)
	if err != nil {
		return nil, d.f.errno("list completed jobs", err)
	}
	entries := make([]fuse.DirEntry, 0, len(jobs))
	for _, j := range jobs {
		entries = append(entries, fuse.DirEntry{Name: j.ID, Mode: syscall.S_IFLNK, Ino: ino("link:completed:" + j.ID)})
	}
	return fusefs.NewListDirStream(entries), 0
}

func (d *completedDir) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.f.mounted, 0)
	return 0
}

// failedDir is failed/: like completed/ (without filter folders), the completed jobs that did not
// succeed: failed runs and stopped jobs. Their status_reason xattr says which.
type failedDir struct {
	fusefs.Inode
	base
}

func (f *fsys) failedJobs(ctx context.Context) ([]jobInfo, error) {
	if err := f.loadJobs(ctx); err != nil {
		return nil, err
	}
	return failedJobs(f.model.list(), f.opts.MaxJobAge, f.now()), nil
}

func (d *failedDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	jobs, err := d.f.failedJobs(ctx)
	if err != nil {
		return nil, d.f.errno("list failed jobs", err)
	}
	for _, j := range jobs {
		if j.ID == name {
			return jobLink(ctx, d.EmbeddedInode(), d.base, "failed", j, out), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *failedDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	jobs, err := d.f.failedJobs(ctx)
	if err != nil {
		return nil, d.f.errno("list failed jobs", err)
	}
	entries := make([]fuse.DirEntry, 0, len(jobs))
	for _, j := range jobs {
		entries = append(entries, fuse.DirEntry{Name: j.ID, Mode: syscall.S_IFLNK, Ino: ino("link:failed:" + j.ID)})
	}
	return fusefs.NewListDirStream(entries), 0
}

func (d *failedDir) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.f.mounted, 0)
	return 0
}

// completedFilterDir is completed/@text/: a folder per completed job holding a file whose name contains
// text, each the job's tree filtered by text. Listing it lists every completed job's files (each fetched
// once per mount, as completed listings never change).
type completedFilterDir struct {
	fusefs.Inode
	base
	text string
}

// matching returns the completed jobs with at least one match, listing up to 8 jobs at once.
func (d *completedFilterDir) matching(ctx context.Context) ([]jobInfo, error) {
	jobs, err := d.f.completedJobs(ctx)
	if err != nil {
		return nil, err
	}
	keep := make([]bool, len(jobs))
	errs := make([]error, len(jobs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			root, _, err := d.f.jobFiles(ctx, j.ID)
			if err != nil {
				errs[i] = err
				return
			}
			keep[i] = d.f.memo.get(root, d.text).files > 0
		}()
	}
	wg.Wait()
	var out []jobInfo
	for i, j := range jobs {
		if errs[i] != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			// One job failing to list leaves it out rather than failing the whole folder.
			d.f.logErr("list job "+j.ID, errs[i])
			continue
		}
		if keep[i] {
			out = append(out, j)
		}
	}
	return out, nil
}

func (d *completedFilterDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	jobs, err := d.f.completedJobs(ctx)
	if err != nil {
		return nil, d.f.errno("list completed jobs", err)
	}
	for _, j := range jobs {
		if j.ID != name {
			continue
		}
		root, final, err := d.f.jobFiles(ctx, j.ID)
		if err != nil {
			return nil, d.f.errno("list job "+j.ID, err)
		}
		ft := d.f.memo.get(root, d.text)
		if ft.files == 0 {
			return nil, syscall.ENOENT
		}
		ch := &dirNode{base: d.base, jobID: j.ID, vpath: []string{"@" + d.text}, ns: "cdir"}
		dirAttr(&out.Attr, j.StatusDate, ft.dirs)
		timeouts(out, final)
		return d.NewInode(ctx, ch, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: ch.inoOf(ch.vpath)}), 0
	}
	return nil, syscall.ENOENT
}

func (d *completedFilterDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	jobs, err := d.matching(ctx)
	if err != nil {
		return nil, d.f.errno("list completed jobs", err)
	}
	entries := make([]fuse.DirEntry, 0, len(jobs))
	for _, j := range jobs {
		ch := dirNode{jobID: j.ID, vpath: []string{"@" + d.text}, ns: "cdir"}
		entries = append(entries, fuse.DirEntry{Name: j.ID, Mode: syscall.S_IFDIR, Ino: ch.inoOf(ch.vpath)})
	}
	return fusefs.NewListDirStream(entries), 0
}

func (d *completedFilterDir) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.f.mounted, -1)
	return 0
}

// byNameDir is by-name/: "<job name> (<id>)" -> ../jobs/<id> for every job, so jobs can be found by
// the name users gave them.
type byNameDir struct {
	fusefs.Inode
	base
}

func (d *byNameDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if err := d.f.loadJobs(ctx); err != nil {
		return nil, d.f.errno("list jobs", err)
	}
	all := d.f.model.list()
	_, idx := byNameIndex(all)
	id, ok := idx[name]
	if !ok {
		return nil, syscall.ENOENT
	}
	for _, j := range all {
		if j.ID == id {
			return jobLink(ctx, d.EmbeddedInode(), d.base, "by-name", j, out), 0
		}
	}
	return nil, syscall.ENOENT
}

func (d *byNameDir) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	if err := d.f.loadJobs(ctx); err != nil {
		return nil, d.f.errno("list jobs", err)
	}
	names, idx := byNameIndex(d.f.model.list())
	entries := make([]fuse.DirEntry, 0, len(names))
	for _, n := range names {
		entries = append(entries, fuse.DirEntry{Name: n, Mode: syscall.S_IFLNK, Ino: ino("link:by-name:" + idx[n])})
	}
	return fusefs.NewListDirStream(entries), 0
}

func (d *byNameDir) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	dirAttr(&out.Attr, d.f.mounted, 0)
	return 0
}
