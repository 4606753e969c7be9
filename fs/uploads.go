package fs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
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
)

// uploads/ is the one writable folder. Its tree lives in go-fuse's inode tree (persistent inodes, as in
// go-fuse's memfs): folders are uploadDir, files uploadFile. A file's bytes are in a staging file of the
// upload engine (never in memory); once it has been closed and left alone for the settle time it is
// handed to the engine (Enqueue), which journals it and publishes it under the file's base name. The
// node keeps its descriptor of the data, so a pending file stays readable, and a write to it makes a
// new version: a fresh staging copy, enqueued in turn, and the old upload cancelled.
//
// Nothing written here is lost to a crash of the mount before Enqueue: while the data is a staging
// file, the engine keeps a record of it (RecordStaging) with its path in uploads/, written when it is
// made and on every rename; a close (Flush) fsyncs the data and seals the record "closed at size N",
// and the first change after that unseals it before the data changes. The next mount (OnAdd of
// uploads/) queues the sealed files under their names and shows the others back where they were: one
// cut off mid-write is not uploaded until it is written or closed again, one closed under a temporary
// name is uploaded once renamed, as always.
//
// Lock order (outer first); no lock is held across Engine.Cancel (it waits for the attempt, whose
// OnDone takes a node's lock) nor across a kernel notification:
//
//	uploadFile.mu -> uploads.mu
//
// Engine.Enqueue, CreateStaging, RecordStaging, DiscardStaging and Rename are called under
// uploadFile.mu: none of them waits for an attempt.

// DefaultUploadSettle is how long a closed file must be left unwritten before it is queued: `cp` and
// editors close and reopen, rsync renames at the end; a short pause avoids uploading a file twice.
const DefaultUploadSettle = 2 * time.Second

// enqueueRetry is the pause before another Enqueue after one failed (a full journal disk).
const enqueueRetry = 10 * time.Second

// uploadAttrTimeout: attributes of files in uploads/ change with every write from any handle, so the
// kernel asks afresh (not 0: go-fuse replaces a zero timeout with the mount's default).
const uploadAttrTimeout = time.Nanosecond

// uploads is the state of uploads/ shared by its nodes.
type uploads struct {
	f      *fsys
	eng    *upload.Engine
	settle time.Duration
	ino    atomic.Uint64 // the last inode counter handed out

	mu    sync.Mutex // guards the fields below
	byID  map[string]*uploadFile
	files map[*uploadFile]struct{} // every live file node, for SettleAll
	root  *fusefs.Inode            // uploads/
}

func newUploads(f *fsys, eng *upload.Engine, settle time.Duration) *uploads {
	if settle <= 0 {
		settle = DefaultUploadSettle
	}
	return &uploads{f: f, eng: eng, settle: settle, byID: map[string]*uploadFile{}, files: map[*uploadFile]struct{}{}}
}

// nextIno is a fresh inode number for a node made in uploads/ (they have no remote id yet).
func (u *uploads) nextIno() uint64 {
	return ino("upload:" + strconv.FormatInt(u.f.mounted.UnixNano(), 36) + ":" + strconv.FormatUint(u.ino.Add(1), 10))
}

func (u *uploads) track(n *uploadFile, id string) {
	u.mu.Lock()
	u.files[n] = struct{}{}
	if id != "" {
		u.byID[id] = n
	}
	u.mu.Unlock()
}

func (u *uploads) untrack(n *uploadFile) {
	u.mu.Lock()
	delete(u.files, n)
	u.mu.Unlock()
}

func (u *uploads) forget(id string) {
	if id == "" {
		return
	}
	u.mu.Lock()
	delete(u.byID, id)
	u.mu.Unlock()
}

// cancel cancels an engine upload (outside every node lock).
func (u *uploads) cancel(id string) {
	if id == "" {
		return
	}
	if err := u.eng.Cancel(id); err != nil && !errors.Is(err, upload.ErrUnknown) {
		u.f.log.Warn("cancel upload", "upload", id, "err", err)
	}
	u.forget(id)
}

// done is the engine's OnDone, run on its own goroutine: the file leaves uploads/ (unless it was
// written again meanwhile) and the library is refreshed so it shows in files/.
func (u *uploads) done(st upload.Status, file remote.File) {
	f := u.f
	if f.opts.FileSeen != nil {
		f.opts.FileSeen(file)
	}
	f.lib.mu.Lock()
	f.lib.fetched = time.Time{} // the next look at files/ refetches
	f.lib.mu.Unlock()

	u.mu.Lock()
	n := u.byID[st.ID]
	delete(u.byID, st.ID)
	root := u.root
	u.mu.Unlock()
	if n != nil {
		n.mu.Lock()
		drop := n.id == st.ID && !n.dirty && !n.gone
		published := file.Name // what the platform holds; the engine's record may carry a later rename
		if published == "" {
			published = st.Name
		}
		if drop && published != n.name {
			// Renamed while the old name was on its way: publish it again under the new one.
			drop, n.dirty = false, true
			n.armLocked()
		}
		if n.id == st.ID {
			n.id = ""
		}
		if drop {
			n.goneLocked()
		}
		n.mu.Unlock()
		if drop {
			u.untrack(n)
			if name, parent := n.Parent(); parent != nil {
				parent.RmChild(name)
				parent.NotifyDelete(name, n.EmbeddedInode())
			}
			n.ForgetPersistent()
		}
	}
	if root != nil {
		if _, top := root.Parent(); top != nil {
			if files := top.GetChild("files"); files != nil {
				files.NotifyEntry(names.Sanitize(file.Name))
			}
		}
	}
}

// settleAll queues now every closed file waiting for its settle time (and, unmounted, closes the data
// files): called at unmount, before the engine closes, so nothing closed is left behind in staging.
func (u *uploads) settleAll(unmounted bool) {
	u.mu.Lock()
	all := make([]*uploadFile, 0, len(u.files))
	for n := range u.files {
		all = append(all, n)
	}
	u.mu.Unlock()
	for _, n := range all {
		n.mu.Lock()
		if n.timer != nil {
			n.timer.Stop()
			n.timer = nil
		}
		n.tgen++
		var old string
		if n.writers == 0 { // one still open for writing stays in staging, shown back by the next mount
			old = n.enqueueLocked()
		}
		if unmounted { // no handler comes any more
			n.gone = true
			n.data.Close()
		}
		n.mu.Unlock()
		u.cancel(old)
	}
}

// hiddenTemp reports names that programs use for temporary files: they are not uploaded until renamed
// to a plain name. rsync's .name.XXXXXX, vim's .name.swp (and .swo, ..., .swx) and its 4913 probe,
// backups name~, Emacs locks .#name, GNOME's .goutputstream-XXXXXX, LibreOffice's .~lock.name#.
func hiddenTemp(name string) bool {
	switch {
	case name == "4913", strings.HasSuffix(name, "~"), strings.HasPrefix(name, ".#"),
		strings.HasPrefix(name, ".goutputstream-"), strings.HasPrefix(name, ".~lock."):
		return true
	case !strings.HasPrefix(name, "."):
		return false
	}
	return rsyncTemp.MatchString(name) || swapFile.MatchString(name)
}

var (
	rsyncTemp = regexp.MustCompile(`^\..+\.[A-Za-z0-9]{6}$`)
	swapFile  = regexp.MustCompile(`^\..*\.sw[a-px]$`)
)

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
		if !s.Complete() || hiddenTemp(s.Name()) {
			show = append(show, s)
			continue
		}
		// Closed before the mount stopped, not queued yet: queue it now, as its settle time would have.
		if r := s.Record.Replaces; r != "" {
			if err := d.up.eng.Cancel(r); err != nil && !errors.Is(err, upload.ErrUnknown) {
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
		data, err := os.Open(st.Path)
		if err != nil {
			d.f.log.Warn("pending upload not shown in uploads/", "upload", st.ID, "name", st.Name, "err", err)
			continue
		}
		name := st.Name
		if d.GetChild(name) != nil {
			name = names.WithSuffix(name, st.ID[:min(8, len(st.ID))])
		}
		t := st.Created
		n := &uploadFile{base: d.base, up: d.up, name: st.Name, data: data, size: st.Size, mode: 0o644,
			id: st.ID, mtime: t, ctime: t, atime: t}
		ch := d.NewPersistentInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: ino("upload:" + st.ID)})
		d.AddChild(name, ch, false)
		d.up.track(n, st.ID)
	}
	for _, s := range show {
		d.recover(ctx, s)
	}
}

// recoveredText is the state of a file a crash of the mount cut off while it was being written.
const recoveredText = "cut off while being written when the mount stopped; rewrite it, or open and close it " +
	"for writing to upload it as it is, or delete it"

// recover shows back, at its recorded path, a staging file the previous mount left unqueued: one cut off
// mid-write (not uploaded until written or closed again), or one closed under a temporary name (uploaded
// once renamed, as before the crash).
func (d *uploadDir) recover(ctx context.Context, s upload.Staged) {
	data, err := os.OpenFile(s.Path, os.O_RDWR, 0)
	if err != nil { // left in staging: the next mount tries again
		d.f.log.Error("file left by the previous mount not shown in uploads/", "path", s.Record.Path, "staging", s.Path, "err", err)
		return
	}
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
		name = names.WithSuffix(name, strings.TrimPrefix(filepath.Base(s.Path), "w-"))
	}
	t := s.ModTime
	n := &uploadFile{base: d.base, up: d.up, name: name, rel: path.Join(rel, name), data: data, owned: true,
		dirty: true, sealed: s.Complete(), size: s.Size, mode: 0o644, mtime: t, ctime: t, atime: t}
	if !s.Complete() {
		n.recovered = recoveredText
		d.f.log.Warn("file cut off mid-write when the mount stopped: shown back in uploads/, not uploaded",
			"path", n.rel, "size", s.Size, "staging", s.Path)
	}
	if n.rel != s.Record.Path {
		if err := n.recordLocked(n.sealed); err != nil { // n is not shared yet
			d.f.logErr("record the new path of "+n.rel, err)
		}
	}
	ch := dir.NewPersistentInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: d.up.nextIno()})
	dir.AddChild(name, ch, false)
	d.up.track(n, "")
	if s.Complete() && !hiddenTemp(name) { // its Enqueue failed above: try again after the settle time
		n.mu.Lock()
		n.armLocked()
		n.mu.Unlock()
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
			op.moved(rel + "/" + name)
		case *uploadDir:
			movedTree(ch, rel+"/"+name)
		}
	}
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
	data, err := d.up.eng.CreateStaging()
	if err != nil {
		return nil, nil, 0, d.f.errno("create staging file for "+name, err)
	}
	now := d.f.now()
	n := &uploadFile{base: d.base, up: d.up, name: name, rel: d.relPath(name), data: data, owned: true, dirty: true,
		mode: mode & 0o7777, mtime: now, atime: now, ctime: now}
	if err := n.recordLocked(false); err != nil { // n is not shared yet
		data.Close()
		_ = d.up.eng.DiscardStaging(data.Name())
		return nil, nil, 0, d.f.errno("create staging file for "+name, err)
	}
	ch := d.NewPersistentInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: d.up.nextIno()})
	d.up.track(n, "")
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
	n.remove()
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
		if errno := n.renamed(newName, rel); errno != 0 {
			return errno
		}
	} else {
		movedTree(src, rel)
	}
	if dst != nil {
		if old, ok := dst.Operations().(*uploadFile); ok {
			old.remove()
		}
		dst.ForgetPersistent()
	}
	d.touch()
	nd.touch()
	return 0
}

// uploadFile is a file in uploads/: being written, settling, or pending upload.
type uploadFile struct {
	fusefs.Inode
	base
	up *uploads

	mu    sync.RWMutex // guards the fields below (RLock: reads of data)
	name  string       // the base name: what it is published under
	data  *os.File     // the content: our staging file (owned) or the engine's pending file (read only)
	owned bool         // data is ours to write: not handed to the engine
	size  int64
	mode  uint32 // permission bits
	mtime time.Time
	atime time.Time
	ctime time.Time
	dirty bool   // changed since its last Enqueue (a new file is dirty)
	id    string // the engine's id of the last version enqueued, while pending
	// writers and opens count open handles (writers: those that may write).
	writers, opens int
	timer          *time.Timer // the settle timer, when armed
	tgen           uint64      // bumped whenever the timer is re-armed or stopped: a stale firing does nothing
	gone           bool        // unlinked, replaced or published: never enqueued again
	enqErr         string      // the last Enqueue failure, for the xattr
	// rel is the file's path in uploads/, kept in its staging record while the data is ours (owned).
	rel string
	// sealed: the staging record says the writer closed the file at size (data fsynced). Cleared, in
	// the record first, before the content changes again.
	sealed bool
	// recovered: the file was cut off mid-write by a crash of the mount; it is shown back, never
	// uploaded as it is until written or closed again (the reason, for the xattr).
	recovered string
}

// recordLocked writes the staging record of owned data: its path and whether it is sealed.
func (n *uploadFile) recordLocked(sealed bool) error {
	r := upload.StagingRecord{Path: n.rel, Replaces: n.id}
	if sealed {
		r.Closed, r.Size = true, n.size
	}
	if err := n.up.eng.RecordStaging(n.data.Name(), r); err != nil {
		return err
	}
	n.sealed = sealed
	return nil
}

// sealLocked records that a writer closed the file: the data is fsynced, then the record says closed
// at this size, so a crash before the upload is queued loses nothing (the next start queues it).
func (n *uploadFile) sealLocked() error {
	if !n.owned || n.gone || n.sealed {
		return nil
	}
	if err := n.data.Sync(); err != nil {
		return err
	}
	return n.recordLocked(true)
}

// unsealLocked runs before the content changes: the record says "open" again, so that a crash in the
// middle of the change is not taken for the closed version.
func (n *uploadFile) unsealLocked() error {
	if !n.sealed || !n.owned || n.gone {
		return nil
	}
	return n.recordLocked(false)
}

func (n *uploadFile) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.mu.RLock()
	defer n.mu.RUnlock()
	n.attrLocked(&out.Attr)
	out.SetTimeout(uploadAttrTimeout)
	return 0
}

func (n *uploadFile) attrLocked(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | n.mode
	a.Nlink = 1
	if n.gone {
		a.Nlink = 0
	}
	a.Size = uint64(n.size)
	a.Blksize = fileBlksize
	a.Blocks = (a.Size + 511) / 512
	a.SetTimes(&n.atime, &n.mtime, &n.ctime)
}

func (n *uploadFile) Setattr(_ context.Context, _ fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sz, ok := in.GetSize(); ok {
		if errno := n.truncateLocked(int64(sz)); errno != 0 {
			return errno
		}
	}
	if m, ok := in.GetMode(); ok {
		n.mode = m & 0o7777
	}
	if t, ok := in.GetMTime(); ok {
		n.mtime = t
	}
	if t, ok := in.GetATime(); ok {
		n.atime = t
	}
	n.ctime = n.f.now()
	// Owner changes (rsync -a as root) are accepted and ignored: the platform has no owners to set.
	n.attrLocked(&out.Attr)
	out.SetTimeout(uploadAttrTimeout)
	return 0
}

func (n *uploadFile) Access(_ context.Context, mask uint32) syscall.Errno {
	if mask&unix.X_OK != 0 {
		n.mu.RLock()
		x := n.mode&0o111 != 0
		n.mu.RUnlock()
		if !x {
			return syscall.EACCES
		}
	}
	return 0
}

func (n *uploadFile) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	h, errno := n.open(flags)
	return h, 0, errno
}

func (n *uploadFile) open(flags uint32) (*uploadHandle, syscall.Errno) {
	writable := flags&syscall.O_ACCMODE != syscall.O_RDONLY
	n.mu.Lock()
	defer n.mu.Unlock()
	if writable && flags&syscall.O_TRUNC != 0 {
		if errno := n.truncateLocked(0); errno != 0 {
			return nil, errno
		}
	}
	n.opens++
	if writable {
		n.writers++
	}
	return &uploadHandle{n: n, writable: writable}, 0
}

// ownLocked makes data a staging file of ours, copying the first keep bytes of the current content
// when it belongs to the engine (a new version of a pending file).
func (n *uploadFile) ownLocked(keep int64) error {
	if n.owned {
		return nil
	}
	nf, err := n.up.eng.CreateStaging()
	if err != nil {
		return err
	}
	keep = min(keep, n.size)
	old := n.data
	n.data = nf
	if !n.gone { // the record first: the copy may be cut short by a crash
		err = n.recordLocked(false)
	}
	if err == nil {
		if err = copyRange(nf, old, keep); err != nil {
			err = fmt.Errorf("copy %s for a new version: %w", n.name, err)
		}
	}
	if err != nil {
		n.data = old
		nf.Close()
		_ = n.up.eng.DiscardStaging(nf.Name())
		return err
	}
	if n.gone {
		os.Remove(nf.Name()) // an unlinked file written through a handle still open: nothing to keep
	}
	old.Close()
	n.owned, n.size = true, keep
	return nil
}

// copyRange copies [0, n) of src to dst: copy_file_range (a reflink or an in-kernel copy), else read
// and write.
func copyRange(dst, src *os.File, n int64) error {
	var off, doff int64
	for off < n {
		k, err := unix.CopyFileRange(int(src.Fd()), &off, int(dst.Fd()), &doff, int(n-off), 0)
		if err != nil {
			if errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EINVAL) {
				break
			}
			return err
		}
		if k == 0 {
			return fmt.Errorf("copy: short source at %d of %d", off, n)
		}
	}
	if off < n {
		buf := make([]byte, 1<<20)
		for off < n {
			k, err := src.ReadAt(buf[:min(int64(len(buf)), n-off)], off)
			if k > 0 {
				if _, werr := dst.WriteAt(buf[:k], off); werr != nil {
					return werr
				}
				off += int64(k)
			}
			if err != nil && off < n {
				return err
			}
		}
	}
	return nil
}

// modifiedLocked books a change of content: a new version, and the settle wait restarts.
func (n *uploadFile) modifiedLocked() {
	n.dirty, n.recovered = true, ""
	n.mtime = n.f.now()
	n.ctime = n.mtime
	if n.timer != nil {
		n.armLocked()
	}
}

func (n *uploadFile) truncateLocked(size int64) syscall.Errno {
	if size == n.size && n.owned {
		n.modifiedLocked()
		return 0
	}
	if err := n.ownLocked(size); err != nil {
		return n.f.errno("truncate "+n.name, err)
	}
	if err := n.unsealLocked(); err != nil {
		return n.f.errno("truncate "+n.name, err)
	}
	if err := n.data.Truncate(size); err != nil {
		return n.f.errno("truncate "+n.name, err)
	}
	n.size = size
	n.modifiedLocked()
	return 0
}

func (n *uploadFile) writeAt(p []byte, off int64) (int, syscall.Errno) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.ownLocked(n.size); err != nil {
		return 0, n.f.errno("write "+n.name, err)
	}
	if err := n.unsealLocked(); err != nil {
		return 0, n.f.errno("write "+n.name, err)
	}
	k, err := n.data.WriteAt(p, off)
	if k > 0 {
		n.size = max(n.size, off+int64(k))
		n.modifiedLocked()
	}
	if err != nil && k == 0 {
		return 0, n.f.errno("write "+n.name, err)
	}
	return k, 0
}

func (n *uploadFile) readAt(p []byte, off int64) (int, syscall.Errno) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if off >= n.size {
		return 0, 0
	}
	p = p[:min(int64(len(p)), n.size-off)]
	k, err := n.data.ReadAt(p, off)
	if err != nil && k < len(p) {
		return 0, n.f.errno("read "+n.name, err)
	}
	return k, 0
}

// armLocked (re)starts the settle timer.
func (n *uploadFile) armLocked() {
	if n.timer != nil {
		n.timer.Stop()
	}
	n.tgen++
	gen := n.tgen
	n.timer = time.AfterFunc(n.up.settle, func() { n.settled(gen) })
}

// closed is called when a writable handle is flushed: a changed file is sealed (its data and the
// record saying it was closed at this size made durable, so a crash cannot lose it; an error goes to
// the close) and waits the settle time. A file recovered half-written is taken as it is.
func (n *uploadFile) closed() syscall.Errno {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.dirty || n.gone {
		return 0
	}
	n.recovered = ""
	err := n.sealLocked()
	n.armLocked()
	return n.f.errno("close "+n.name, err)
}

// settled runs when the settle time passed without writes: the file is queued, unless still open for
// writing (its release re-arms), temporary-named or gone.
func (n *uploadFile) settled(gen uint64) {
	n.mu.Lock()
	if gen != n.tgen {
		n.mu.Unlock()
		return
	}
	n.timer = nil
	var old string
	if n.writers == 0 {
		old = n.enqueueLocked()
	}
	n.mu.Unlock()
	n.up.cancel(old)
}

// enqueueLocked hands the current content to the engine if it is a new version under a plain name, and
// returns the superseded upload for the caller to cancel (outside the lock).
func (n *uploadFile) enqueueLocked() (superseded string) {
	if !n.dirty || n.gone || n.recovered != "" || hiddenTemp(n.name) {
		return ""
	}
	if err := n.ownLocked(n.size); err != nil {
		n.enqueueFailedLocked(err)
		return ""
	}
	// The data must be on disk before the journal says it is there (sealed: synced at the close, and
	// unchanged since, or it would have been unsealed).
	if !n.sealed {
		if err := n.data.Sync(); err != nil {
			n.enqueueFailedLocked(err)
			return ""
		}
	}
	id, err := n.up.eng.Enqueue(n.data.Name(), n.name)
	if err != nil {
		if !errors.Is(err, upload.ErrClosed) {
			n.enqueueFailedLocked(err)
		}
		return ""
	}
	old := n.id
	n.id, n.dirty, n.owned, n.enqErr, n.sealed = id, false, false, "", false
	n.up.track(n, id)
	n.f.log.Debug("upload queued", "name", n.name, "upload", id, "size", n.size)
	return old
}

func (n *uploadFile) enqueueFailedLocked(err error) {
	n.enqErr = err.Error()
	n.f.logErr("queue upload of "+n.name, err)
	if n.timer != nil {
		n.timer.Stop()
	}
	n.tgen++
	gen := n.tgen
	n.timer = time.AfterFunc(max(enqueueRetry, n.up.settle), func() { n.settled(gen) })
}

// goneLocked marks the node dead: no timer, no upload, the staging file removed (the descriptor stays
// open for handles still reading or writing it, and is closed by the last release).
func (n *uploadFile) goneLocked() {
	n.gone = true
	if n.timer != nil {
		n.timer.Stop()
		n.timer = nil
	}
	n.tgen++
	if n.owned {
		if err := n.up.eng.DiscardStaging(n.data.Name()); err != nil {
			n.f.logErr("remove staging file of "+n.name, err)
		}
	}
	if n.opens == 0 {
		n.data.Close()
	}
}

// remove is unlink (or replacement by a rename): the pending upload, if any, is cancelled, which
// aborts its multipart upload.
func (n *uploadFile) remove() {
	n.mu.Lock()
	id := n.id
	n.id = ""
	if !n.gone {
		n.goneLocked()
	}
	n.mu.Unlock()
	n.up.untrack(n)
	n.up.cancel(id)
}

// renamed books a new base name and path in uploads/. A pending upload is published under it (or,
// renamed to a temporary name, taken back into a staging file of ours); a file renamed from a temporary
// name to a plain one is queued after the settle time.
func (n *uploadFile) renamed(name, rel string) syscall.Errno {
	n.mu.Lock()
	oldName, oldRel := n.name, n.rel
	n.name, n.rel = name, rel
	var cancel string
	var err error
	if hiddenTemp(name) && n.id != "" && !n.dirty {
		// Taken back: copied to a staging file sealed as closed, so a crash cannot lose it.
		if err = n.ownLocked(n.size); err == nil {
			if err = n.sealLocked(); err == nil {
				cancel, n.id, n.dirty = n.id, "", true
			}
		}
	} else if n.owned && !n.gone {
		err = n.recordLocked(n.sealed)
	}
	if err != nil {
		n.name, n.rel = oldName, oldRel
		n.mu.Unlock()
		return n.f.errno("rename "+oldName, err)
	}
	n.ctime = n.f.now()
	switch {
	case hiddenTemp(name):
	case n.dirty:
		if n.writers == 0 && !n.gone {
			n.armLocked()
		}
	case n.id != "":
		err := n.up.eng.Rename(n.id, name)
		switch {
		case err == nil:
		case errors.Is(err, upload.ErrPublishing):
			// An attempt is sending the old name right now: rename once it is over. If it published,
			// done sees the old name and uploads the file again under this one.
			go n.renameLater(n.id, name)
		case errors.Is(err, upload.ErrUnknown):
			// Published meanwhile: done compares the names.
		default:
			n.f.logErr("rename upload "+n.id, err)
		}
	}
	n.mu.Unlock()
	n.up.cancel(cancel)
	return 0
}

// moved books a new path in uploads/ (a folder above it was renamed).
func (n *uploadFile) moved(rel string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rel = rel
	if n.owned && !n.gone {
		if err := n.recordLocked(n.sealed); err != nil {
			n.f.logErr("record the new path of "+n.name, err)
		}
	}
}

// renameLater retries the engine's Rename of upload id while an attempt is publishing it, until the
// node has moved on (another version or name) or the upload is over.
func (n *uploadFile) renameLater(id, name string) {
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		time.Sleep(delay)
		n.mu.Lock()
		if n.id != id || n.name != name || n.gone {
			n.mu.Unlock()
			return
		}
		err := n.up.eng.Rename(id, name)
		n.mu.Unlock()
		if !errors.Is(err, upload.ErrPublishing) {
			if err != nil && !errors.Is(err, upload.ErrUnknown) {
				n.f.logErr("rename upload "+id, err)
			}
			return
		}
	}
}

// state is the user.rescale.upload attribute.
func (n *uploadFile) state() string {
	n.mu.RLock()
	name, dirty, id, writers, settling, gone, enqErr, recovered := n.name, n.dirty, n.id, n.writers, n.timer != nil, n.gone, n.enqErr, n.recovered
	n.mu.RUnlock()
	switch {
	case gone:
		return "removed"
	case dirty && recovered != "":
		return "not uploaded: " + recovered
	case dirty && hiddenTemp(name):
		return "not uploaded: temporary name (rename it to upload it)"
	case dirty && enqErr != "":
		return "not queued: " + enqErr
	case dirty && writers > 0:
		return "writing"
	case dirty && settling:
		return "settling (queued once left unwritten for " + n.up.settle.String() + ")"
	case dirty:
		return "writing"
	case id == "":
		return "done"
	}
	st, ok := n.up.eng.Status(id)
	if !ok {
		return "done"
	}
	return uploadStateText(st)
}

func uploadStateText(st upload.Status) string {
	switch st.State {
	case upload.StateUploading:
		pct := 100.0
		if st.Size > 0 {
			pct = 100 * float64(st.Done) / float64(st.Size)
		}
		return fmt.Sprintf("uploading %d/%d bytes (%.1f%%)", st.Done, st.Size, pct)
	case upload.StateRetrying, upload.StateFailed:
		s := string(st.State) + ": " + st.Error
		if !st.NextTry.IsZero() {
			s += " (next try " + st.NextTry.UTC().Format(time.RFC3339) + ")"
		}
		return s
	case upload.StateDamaged:
		return "damaged: " + st.Error
	}
	return string(st.State)
}

const uploadXattr = xattrPrefix + "upload"

func (n *uploadFile) Getxattr(_ context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if attr != uploadXattr {
		return 0, syscall.ENODATA
	}
	return fill(dest, n.state())
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
// closure set before the engine starts): the file leaves uploads/ and shows in files/. It returns at
// once; the work runs on its own goroutine, so no lock of the engine is held while the kernel is told.
func (m *Mounted) UploadDone(st upload.Status, f remote.File) {
	if up := m.fsys.io.up; up != nil {
		go up.done(st, f)
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
		up.settleAll(unmounted)
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
