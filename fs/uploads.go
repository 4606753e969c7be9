package fs

import (
	"context"
	"errors"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
	"github.com/rescalefs/rescalefs/upload/writeback"
)

// uploads/ is the one writable folder: a thin adapter, in the style of go-fuse's memfs, over the
// write-back model of upload/writeback. Its tree lives in go-fuse's inode tree (persistent inodes):
// folders are uploadDir, files uploadFile, each file node holding one writeback.File, which decides
// everything else (staging, sealing, settling, queueing, publishing, what the xattr says).
//
// Lock order (outer first): writeback's locks -> uploads.mu. No lock of ours is held across a kernel
// notification.

// DefaultUploadSettle is how long a closed file must be left unwritten before it is queued.
const DefaultUploadSettle = writeback.DefaultSettle

// uploadAttrTimeout: attributes of files in uploads/ change with every write from any handle, so the
// kernel asks afresh (not 0: go-fuse replaces a zero timeout with the mount's default).
const uploadAttrTimeout = time.Nanosecond

// uploads is the state of uploads/ shared by its nodes.
type uploads struct {
	f   *fsys
	eng *upload.Engine
	set *writeback.Set
	ino atomic.Uint64 // the last inode counter handed out
	// dones are the engine's confirmations in progress (UploadDone's goroutines), waited for by
	// WaitUploads once the engine is closed, so none outlives the mount.
	dones sync.WaitGroup

	mu    sync.Mutex // guards the fields below
	nodes map[*writeback.File]*uploadFile
	root  *fusefs.Inode // uploads/
}

func newUploads(f *fsys, eng *upload.Engine, settle, hold time.Duration) *uploads {
	u := &uploads{f: f, eng: eng, nodes: map[*writeback.File]*uploadFile{}}
	o := writeback.Options{Engine: eng, Settle: settle, Hold: hold, Log: f.log, Now: f.now, Gone: u.gone}
	if c := f.opts.Cache; c != nil {
		o.Reclaim = c.Reclaim // staging wins over cached blocks on a shared disk
	}
	u.set = writeback.NewSet(o)
	eng.SetOnRejected(u.set.Rejected) // before the engine starts (after the mount)
	return u
}

// nextIno is a fresh inode number for a node made in uploads/ (they have no remote id yet).
func (u *uploads) nextIno() uint64 {
	return ino("upload:" + strconv.FormatInt(u.f.mounted.UnixNano(), 36) + ":" + strconv.FormatUint(u.ino.Add(1), 10))
}

// addFile is the one place a file node is made: the model's file from sp, its inode added to dir
// under name.
func (u *uploads) addFile(ctx context.Context, dir *fusefs.Inode, name string, ino uint64, sp writeback.Spec) (*uploadFile, *fusefs.Inode, error) {
	w, err := u.set.NewFile(sp)
	if err != nil {
		return nil, nil, err
	}
	n := &uploadFile{base: base{f: u.f}, up: u, w: w}
	if ino == 0 {
		ino = u.nextIno()
	}
	ch := dir.NewPersistentInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: ino})
	dir.AddChild(name, ch, false)
	u.mu.Lock()
	u.nodes[w] = n
	u.mu.Unlock()
	return n, ch, nil
}

func (u *uploads) drop(w *writeback.File) {
	u.mu.Lock()
	delete(u.nodes, w)
	u.mu.Unlock()
}

// done is the rest of the engine's OnDone, run on its own goroutine: the file w (nil: written or
// renamed meanwhile) leaves uploads/ and the library is refreshed so it shows in files/.
func (u *uploads) done(st upload.Status, file remote.File, w *writeback.File) {
	f := u.f
	if f.opts.FileSeen != nil {
		f.opts.FileSeen(file)
	}
	f.lib.mu.Lock()
	f.lib.fetched = time.Time{} // the next look at files/ refetches
	f.lib.mu.Unlock()

	if w != nil {
		u.removeNode(w)
	}
	u.mu.Lock()
	root := u.root
	u.mu.Unlock()
	if root != nil {
		if _, top := root.Parent(); top != nil {
			if files := top.GetChild("files"); files != nil {
				files.NotifyEntry(names.Sanitize(file.Name))
			}
		}
	}
}

// removeNode takes the node of file w, gone from uploads/ by the model's doing (published, or
// replaced by its newer version), out of the tree and tells the kernel.
func (u *uploads) removeNode(w *writeback.File) {
	u.mu.Lock()
	n := u.nodes[w]
	delete(u.nodes, w)
	u.mu.Unlock()
	if n == nil {
		return
	}
	if name, parent := n.Parent(); parent != nil {
		parent.RmChild(name)
		parent.NotifyDelete(name, n.EmbeddedInode())
	}
	n.ForgetPersistent()
}

// gone is the model's Options.Gone: the node goes on its own goroutine (counted in dones, waited for
// by WaitUploads), never from inside the handler or timer that queued the newer version.
func (u *uploads) gone(w *writeback.File) {
	u.dones.Add(1)
	go func() {
		defer u.dones.Done()
		u.removeNode(w)
	}()
}

// uploadDir is uploads/ or a folder inside it. Its children are go-fuse's (default lookup and readdir).
type uploadDir struct {
	fusefs.Inode
	base
	up   *uploads
	root bool

	mu    sync.Mutex // guards mode and mtime
	mode  uint32
	mtime time.Time
}

func newUploadDir(b base, up *uploads, mode uint32, root bool) *uploadDir {
	return &uploadDir{base: b, up: up, root: root, mode: mode & 0o7777, mtime: b.f.now()}
}

// OnAdd (uploads/ itself) accounts for what a previous mount left: staging files closed by their
// writer are queued, the uploads the engine resumed from its journal are shown under their names (their
// folders are not journaled), and the other staging files are shown back where they were (recover).
func (d *uploadDir) OnAdd(ctx context.Context) {
	if !d.root {
		return
	}
	d.up.mu.Lock()
	d.up.root = d.EmbeddedInode()
	d.up.mu.Unlock()
	var show []upload.Staged
	for _, s := range d.up.eng.TakeStaged() {
		if !s.Complete() || writeback.Temporary(s.Name()) != writeback.Plain {
			show = append(show, s)
			continue
		}
		// Closed before the mount stopped, not queued yet: queue it now, as its settle time would have.
		if r := s.Record.Replaces; r != "" { // withdrawn at once; its abort must not hold up the mount
			if err := d.up.eng.CancelNoWait(r); err != nil && !errors.Is(err, upload.ErrUnknown) {
				d.f.log.Warn("cancel the version a recovered file replaces", "upload", r, "err", err)
			}
		}
		id, err := d.up.eng.Enqueue(s.Path, s.Name())
		if err != nil {
			d.f.logErr("queue "+s.Record.Path+", closed before the mount stopped", err)
			show = append(show, s)
			continue
		}
		d.f.log.Info("queued a file closed before the mount stopped", "path", s.Record.Path, "upload", id, "size", s.Size)
	}
	for _, st := range d.up.eng.Snapshot() {
		switch st.State {
		case upload.StateDone, upload.StateDamaged:
			continue
		}
		name := st.Name
		if d.GetChild(name) != nil {
			name = names.WithSuffix(name, st.ID[:min(8, len(st.ID))])
		}
		// Rel is where it is shown: a write to it makes a staging copy recorded there.
		sp := writeback.Spec{Name: st.Name, Rel: name, Mode: 0o644, From: writeback.Origin{Pending: &st}}
		if _, _, err := d.up.addFile(ctx, d.EmbeddedInode(), name, ino("upload:"+st.ID), sp); err != nil {
			d.f.log.Warn("pending upload not shown in uploads/", "upload", st.ID, "name", st.Name, "err", err)
		}
	}
	for _, s := range show {
		d.recover(ctx, s)
	}
}

// recover shows back, at its recorded path, a staging file the previous mount left unqueued: one cut off
// mid-write (not uploaded until written or closed again), or one closed under a temporary name.
func (d *uploadDir) recover(ctx context.Context, s upload.Staged) {
	parts := strings.Split(s.Record.Path, "/")
	dir, rel := d.EmbeddedInode(), ""
	for _, p := range parts[:len(parts)-1] {
		ch := dir.GetChild(p)
		if ch == nil {
			nd := newUploadDir(d.base, d.up, 0o755, false)
			ch = dir.NewPersistentInode(ctx, nd, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: d.up.nextIno()})
			dir.AddChild(p, ch, false)
		} else if _, ok := ch.Operations().(*uploadDir); !ok {
			break // a file took the folder's name: shown beside it
		}
		dir, rel = ch, path.Join(rel, p)
	}
	name := s.Name()
	if dir.GetChild(name) != nil {
		name = names.WithSuffix(name, writeback.StagingName(s))
	}
	sp := writeback.Spec{Name: name, Rel: path.Join(rel, name), Mode: 0o644, From: writeback.Origin{Staged: &s}}
	if _, _, err := d.up.addFile(ctx, dir, name, 0, sp); err != nil { // left in staging: the next mount tries again
		d.f.log.Error("file left by the previous mount not shown in uploads/", "path", s.Record.Path, "staging", s.Path, "err", err)
		return
	}
	if !s.Complete() {
		d.f.log.Warn("file cut off mid-write when the mount stopped: shown back in uploads/, not uploaded",
			"path", sp.Rel, "size", s.Size, "staging", s.Path)
	}
}

func (d *uploadDir) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	subdirs := 0
	for _, ch := range d.Children() {
		if ch.IsDir() {
			subdirs++
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out.Mode = syscall.S_IFDIR | d.mode
	out.Nlink = uint32(2 + subdirs)
	setTimes(&out.Attr, d.mtime)
	out.SetTimeout(uploadAttrTimeout)
	return 0
}

func (d *uploadDir) Setattr(_ context.Context, _ fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if _, ok := in.GetSize(); ok {
		return syscall.EISDIR
	}
	d.mu.Lock()
	if m, ok := in.GetMode(); ok {
		d.mode = m & 0o7777
	}
	if t, ok := in.GetMTime(); ok {
		d.mtime = t
	}
	d.mu.Unlock()
	return d.Getattr(context.Background(), nil, out)
}

func (d *uploadDir) Access(context.Context, uint32) syscall.Errno { return 0 }

// relPath is the path in uploads/ of name in d.
func (d *uploadDir) relPath(name string) string {
	if d.root {
		return name
	}
	d.up.mu.Lock()
	root := d.up.root
	d.up.mu.Unlock()
	return path.Join(d.Path(root), name)
}

// movedTree books the new paths of the files under folder dir, now at rel.
func movedTree(dir *fusefs.Inode, rel string) {
	for name, ch := range dir.Children() {
		switch op := ch.Operations().(type) {
		case *uploadFile:
			op.w.Moved(rel + "/" + name)
		case *uploadDir:
			movedTree(ch, rel+"/"+name)
		}
	}
}

// badName refuses, with EINVAL and a line in the log, a file name the platform cannot store.
func (d *uploadDir) badName(name string) syscall.Errno {
	if err := writeback.CheckName(name); err != nil {
		d.f.log.Warn("file name refused in uploads/", "path", d.relPath(name), "err", err)
		return syscall.EINVAL
	}
	return 0
}

func (d *uploadDir) touch() {
	d.mu.Lock()
	d.mtime = d.f.now()
	d.mu.Unlock()
}

func (d *uploadDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if d.GetChild(name) != nil {
		return nil, syscall.EEXIST
	}
	if len(name) > names.MaxLen {
		return nil, syscall.ENAMETOOLONG
	}
	nd := newUploadDir(d.base, d.up, mode, false)
	ch := d.NewPersistentInode(ctx, nd, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: d.up.nextIno()})
	d.touch()
	var a fuse.AttrOut
	nd.Getattr(ctx, nil, &a)
	out.Attr = a.Attr
	out.SetAttrTimeout(uploadAttrTimeout)
	return ch, 0
}

func (d *uploadDir) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	if d.GetChild(name) != nil {
		return nil, nil, 0, syscall.EEXIST
	}
	if len(name) > names.MaxLen {
		return nil, nil, 0, syscall.ENAMETOOLONG
	}
	if errno := d.badName(name); errno != 0 {
		return nil, nil, 0, errno
	}
	sp := writeback.Spec{Name: name, Rel: d.relPath(name), Mode: mode}
	n, ch, err := d.up.addFile(ctx, d.EmbeddedInode(), name, 0, sp)
	if err != nil {
		return nil, nil, 0, d.f.errno("create staging file for "+name, err)
	}
	d.touch()
	h, errno := n.open(flags &^ syscall.O_TRUNC)
	if errno != 0 {
		return nil, nil, 0, errno
	}
	var a fuse.AttrOut
	n.Getattr(ctx, nil, &a)
	out.Attr = a.Attr
	out.SetAttrTimeout(uploadAttrTimeout)
	return ch, h, 0, 0
}

func (d *uploadDir) Unlink(_ context.Context, name string) syscall.Errno {
	ch := d.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	n, ok := ch.Operations().(*uploadFile)
	if !ok {
		return syscall.EISDIR
	}
	n.w.Remove()
	d.up.drop(n.w)
	n.ForgetPersistent()
	d.touch()
	return 0
}

func (d *uploadDir) Rmdir(_ context.Context, name string) syscall.Errno {
	ch := d.GetChild(name)
	if ch == nil {
		return syscall.ENOENT
	}
	if _, ok := ch.Operations().(*uploadDir); !ok {
		return syscall.ENOTDIR
	}
	if len(ch.Children()) > 0 {
		return syscall.ENOTEMPTY
	}
	ch.ForgetPersistent()
	d.touch()
	return 0
}

// Rename moves a name within uploads/ (EXDEV elsewhere, so mv copies and meets EROFS). A file's new base
// name is what it is published under; over an existing file, that file's upload is cancelled.
func (d *uploadDir) Rename(_ context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	nd, ok := newParent.(*uploadDir)
	if !ok {
		return syscall.EXDEV
	}
	if flags&fusefs.RENAME_EXCHANGE != 0 {
		return syscall.EINVAL
	}
	if len(newName) > names.MaxLen {
		return syscall.ENAMETOOLONG
	}
	src := d.GetChild(name)
	if src != nil && !src.IsDir() {
		if errno := d.badName(newName); errno != 0 {
			return errno
		}
	}
	if src == nil {
		return syscall.ENOENT
	}
	dst := nd.GetChild(newName)
	if dst != nil {
		if dst == src {
			return 0
		}
		if flags&unix.RENAME_NOREPLACE != 0 {
			return syscall.EEXIST
		}
		switch {
		case src.IsDir() && !dst.IsDir():
			return syscall.ENOTDIR
		case !src.IsDir() && dst.IsDir():
			return syscall.EISDIR
		case dst.IsDir() && len(dst.Children()) > 0:
			return syscall.ENOTEMPTY
		}
	}
	rel := nd.relPath(newName)
	if n, ok := src.Operations().(*uploadFile); ok {
		if err := n.w.Rename(newName, rel); err != nil {
			return d.f.errno("rename "+name, err)
		}
	} else {
		movedTree(src, rel)
	}
	if dst != nil {
		if old, ok := dst.Operations().(*uploadFile); ok {
			old.w.Remove()
			d.up.drop(old.w)
		}
		dst.ForgetPersistent()
	}
	d.touch()
	nd.touch()
	return 0
}

// uploadFile is a file in uploads/: the node of one writeback.File.
type uploadFile struct {
	fusefs.Inode
	base
	up *uploads
	w  *writeback.File
}

func (n *uploadFile) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	uploadAttr(n.w.Attr(), &out.Attr)
	out.SetTimeout(uploadAttrTimeout)
	return 0
}

func uploadAttr(w writeback.Attr, a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | w.Mode
	a.Nlink = w.Nlink
	a.Size = uint64(w.Size)
	a.Blksize = requestBlksize
	a.Blocks = (a.Size + 511) / 512
	a.SetTimes(&w.Atime, &w.Mtime, &w.Ctime)
}

func (n *uploadFile) Setattr(_ context.Context, _ fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	var size *int64
	var mode *uint32
	var atime, mtime *time.Time
	if sz, ok := in.GetSize(); ok {
		s := int64(sz)
		size = &s
	}
	if m, ok := in.GetMode(); ok {
		mode = &m
	}
	if t, ok := in.GetMTime(); ok {
		mtime = &t
	}
	if t, ok := in.GetATime(); ok {
		atime = &t
	}
	// Owner changes (rsync -a as root) are accepted and ignored: the platform has no owners to set.
	if err := n.w.SetAttr(size, mode, atime, mtime); err != nil {
		return n.f.errno("setattr "+n.w.Name(), err)
	}
	return n.Getattr(context.Background(), nil, out)
}

func (n *uploadFile) Access(_ context.Context, mask uint32) syscall.Errno {
	if mask&unix.X_OK != 0 && !n.w.Executable() {
		return syscall.EACCES
	}
	return 0
}

func (n *uploadFile) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	h, errno := n.open(flags)
	return h, 0, errno
}

func (n *uploadFile) open(flags uint32) (*uploadHandle, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	if err := n.w.Open(writable, flags&syscall.O_TRUNC != 0); err != nil {
		return nil, n.f.errno("open "+n.w.Name(), err)
	}
	return &uploadHandle{n: n, writable: writable}, 0
}

const uploadXattr = xattrPrefix + "upload"

func (n *uploadFile) Getxattr(_ context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != uploadXattr {
		return 0, syscall.ENODATA
	}
	return fill(dest, n.w.Describe())
}

func (n *uploadFile) Listxattr(_ context.Context, dest []byte) (uint32, syscall.Errno) {
	return fill(dest, uploadXattr+"\x00")
}

// Setxattr and Removexattr: ENOTSUP, so cp -a and rsync -X carry on without the attributes (they are
// not uploaded anyway).
func (n *uploadFile) Setxattr(context.Context, string, []byte, uint32) syscall.Errno {
	return syscall.ENOTSUP
}

func (n *uploadFile) Removexattr(context.Context, string) syscall.Errno { return syscall.ENOTSUP }

// UploadDone is the upload engine's OnDone for this mount (give it to upload.Options.OnDone through a
// closure set before the engine starts): the file leaves uploads/ and shows in files/. The file's
// state is booked before it returns (the engine keeps the upload's data and record until then, so a
// rename racing the confirmation is never lost: writeback.Set.Done); the rest runs on its own
// goroutine, so that the engine does not wait while the kernel is told. WaitUploads waits for those.
func (m *Mounted) UploadDone(st upload.Status, f remote.File) {
	if up := m.fsys.io.up; up != nil {
		w := up.set.Done(st)
		up.dones.Add(1)
		go func() {
			defer up.dones.Done()
			up.done(st, f, w)
		}()
	}
}

// WaitUploads waits for the engine's confirmations still being booked (UploadDone's work). Call it
// after the engine is closed (so no confirmation comes any more), in the shutdown's wait step: none
// then touches the mount's files after it is gone, and SettleUploads after the unmount made sure none
// arms a timer.
func (m *Mounted) WaitUploads() {
	if up := m.fsys.io.up; up != nil {
		up.dones.Wait()
	}
}

// SettleUploads queues at once every file of uploads/ still in its settle wait and, once unmounted,
// closes the mount's descriptors of staging and pending files. Call it after the unmount and before the
// engine is closed, so nothing written to uploads/ stays behind in staging.
func (m *Mounted) SettleUploads() {
	if up := m.fsys.io.up; up != nil {
		unmounted := false
		select {
		case <-m.done:
			unmounted = true
		default:
		}
		up.set.SettleAll(unmounted)
	}
}

// Compile-time checks of uploads/'s nodes and handle (the rest are in interfaces.go).
var (
	_ = (fusefs.NodeOnAdder)((*uploadDir)(nil))
	_ = (fusefs.NodeGetattrer)((*uploadDir)(nil))
	_ = (fusefs.NodeSetattrer)((*uploadDir)(nil))
	_ = (fusefs.NodeAccesser)((*uploadDir)(nil))
	_ = (fusefs.NodeMkdirer)((*uploadDir)(nil))
	_ = (fusefs.NodeCreater)((*uploadDir)(nil))
	_ = (fusefs.NodeUnlinker)((*uploadDir)(nil))
	_ = (fusefs.NodeRmdirer)((*uploadDir)(nil))
	_ = (fusefs.NodeRenamer)((*uploadDir)(nil))

	_ = (fusefs.NodeGetattrer)((*uploadFile)(nil))
	_ = (fusefs.NodeSetattrer)((*uploadFile)(nil))
	_ = (fusefs.NodeAccesser)((*uploadFile)(nil))
	_ = (fusefs.NodeOpener)((*uploadFile)(nil))
	_ = (fusefs.NodeGetxattrer)((*uploadFile)(nil))
	_ = (fusefs.NodeListxattrer)((*uploadFile)(nil))
	_ = (fusefs.NodeSetxattrer)((*uploadFile)(nil))
	_ = (fusefs.NodeRemovexattrer)((*uploadFile)(nil))

	_ = (fusefs.FileReader)((*uploadHandle)(nil))
	_ = (fusefs.FileWriter)((*uploadHandle)(nil))
	_ = (fusefs.FileFlusher)((*uploadHandle)(nil))
	_ = (fusefs.FileFsyncer)((*uploadHandle)(nil))
	_ = (fusefs.FileReleaser)((*uploadHandle)(nil))
)
