package writeback

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/upload"
)

// Engine is the part of upload.Engine the files use.
type Engine interface {
	CreateStaging() (*os.File, error)
	RecordStaging(stagingPath string, r upload.StagingRecord) error
	DiscardStaging(stagingPath string) error
	// EnqueueVersion queues a staging file; sha512 is its sum computed as it was written ("" unknown),
	// replaces the pending upload it is a new version of ("" none), cancelled by the caller next.
	EnqueueVersion(stagingPath, name string, size int64, sha512, replaces string) (string, error)
	Rename(id, name string) error
	// Handover moves the files upload from supersedes to upload to, a new version replacing it: they
	// are deleted once to is published, where from's withdrawal would delete them at once.
	Handover(from, to string) error
	Status(id string) (upload.Status, bool)
	// CancelNoWait marks an upload cancelled at once; the abort and clean-up run in the background.
	CancelNoWait(id string) error
	// CancelVersion is CancelNoWait of a queued upload whose new version (stagingPath) is removed
	// with it: the staging file is discarded too, in one step a crash cannot split.
	CancelVersion(id, stagingPath string) error
}

var _ Engine = (*upload.Engine)(nil)

// DefaultSettle is how long a closed file must be left unwritten before it is queued: `cp` and editors
// close and reopen, rsync renames at the end; a short pause avoids uploading a file twice.
const DefaultSettle = 2 * time.Second

// DefaultHold is how long a file closed under a name that may be a temporary (rsync's .name.XXXXXX,
// which is also what .case.config looks like) is held for a rename before it is published under its
// own name. rsync renames as soon as the file is written (with --delay-updates, at the end of the
// run: longer runs publish the temporary too, and then the file again under its final name).
const DefaultHold = time.Minute

// enqueueRetry is the pause before another Enqueue after one failed (a full journal disk).
const enqueueRetry = 10 * time.Second

// reclaimAtLeast is what a write that hit a full disk asks the block cache to free before it tries
// again: more than the one write, so the next writes do not each evict a little.
const reclaimAtLeast = 8 << 20

// Options configure a Set.
type Options struct {
	Engine Engine
	Settle time.Duration // 0 = DefaultSettle
	Hold   time.Duration // 0 = DefaultHold
	Log    *slog.Logger
	Now    func() time.Time
	// Reclaim, when set, frees at least n bytes of the disk the staging files are on (the block
	// cache's disk tier) and reports what it freed: a write that hits a full disk calls it and tries
	// again before it fails, so staging wins over cached blocks.
	Reclaim func(n int64) int64
	// Gone, when set, is told (outside every lock) of a file that leaves uploads/ by the set's own
	// doing rather than by a syscall or a confirmation (Done): a pending upload shown after a restart,
	// replaced by its newer version recovered from staging once that is queued (cancelReplaced).
	Gone func(*File)
}

// Set is the pending files of one mount.
//
// Lock order (outer first); no lock is held across a wait for the engine:
//
//	File.mu -> Set.mu
type Set struct {
	o Options

	mu   sync.Mutex // guards the fields below
	byID map[string]*File
	// files are the files whose data is open, for SettleAll: every live one, and those gone (removed,
	// published) while a handle still has them open, until its release. A release the kernel never
	// sends (the mount ended first) leaves the data to SettleAll(true) to close.
	files map[*File]struct{}

	// hashBufs holds the buffers of the hashers (hash.go), one per chunk being hashed: taking one
	// is the bound on hashing at once.
	hashBufs chan []byte
	// hashing counts the hasher goroutines (hashLoop); Add under mu, and never once final is set:
	// SettleAll(true) waits for them before it closes the data files they read.
	hashing sync.WaitGroup
	// stopHashing is closed by SettleAll(true): a hasher waiting for a buffer gives up.
	stopHashing chan struct{}

	// final: SettleAll(true) ran, the data files are closed and no handler comes any more, so no timer
	// may be armed (a late Done of a renamed file would queue closed data after the mount is gone).
	final atomic.Bool
}

// NewSet makes the set of one mount.
func NewSet(o Options) *Set {
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	if o.Hold <= 0 {
		o.Hold = DefaultHold
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Set{o: o, byID: map[string]*File{}, files: map[*File]struct{}{}, hashBufs: make(chan []byte, hashers),
		stopHashing: make(chan struct{})}
	for range hashers {
		s.hashBufs <- nil // allocated on first use
	}
	return s
}

// Settle is the settle time of the set.
func (s *Set) Settle() time.Duration { return s.o.Settle }

func (s *Set) track(f *File, id string) {
	s.mu.Lock()
	s.files[f] = struct{}{}
	if id != "" {
		s.byID[id] = f
	}
	s.mu.Unlock()
}

// all is every live file, copied out so that each File.mu is taken after Set.mu is released (the lock
// order is File.mu -> Set.mu).
func (s *Set) all() []*File {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := make([]*File, 0, len(s.files))
	for f := range s.files {
		all = append(all, f)
	}
	return all
}

func (s *Set) untrack(f *File) {
	s.mu.Lock()
	delete(s.files, f)
	s.mu.Unlock()
}

// cancel withdraws an engine upload without waiting for its attempt or its abort (unlink and rename
// must not wait on the network).
func (s *Set) cancel(id string) {
	if id == "" {
		return
	}
	if err := s.o.Engine.CancelNoWait(id); err != nil && !errors.Is(err, upload.ErrUnknown) {
		s.o.Log.Warn("cancel upload", "upload", id, "err", err)
	}
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
}

// cancelReplaced withdraws upload old, replaced by the version by has just queued. After a restart the
// old version may be a file of its own (a pending upload shown beside the newer version the crash cut
// off, which recorded that it replaces it): that file leaves uploads/ with its upload, or it would
// stay there for good, shown as pending, its upload gone.
func (s *Set) cancelReplaced(old string, by *File) {
	if old == "" {
		return
	}
	s.mu.Lock()
	g := s.byID[old]
	s.mu.Unlock()
	s.cancel(old)
	if g == nil || g == by {
		return
	}
	g.mu.Lock()
	if g.id != old || g.owned || !g.toLocked(EvRemove) { // written since: a version of its own
		g.mu.Unlock()
		return
	}
	g.id = ""
	g.goneLocked()
	rel := g.rel
	g.mu.Unlock()
	s.o.Log.Info("upload replaced by its newer version recovered from staging", "upload", old, "path", rel)
	if s.o.Gone != nil {
		s.o.Gone(g)
	}
}

// cancelVersion withdraws engine upload id together with the staging file of its new version
// (Engine.CancelVersion), and reports whether the engine discarded the staging file.
func (s *Set) cancelVersion(id, staging string) bool {
	err := s.o.Engine.CancelVersion(id, staging)
	if err != nil && !errors.Is(err, upload.ErrUnknown) {
		s.o.Log.Warn("cancel upload", "upload", id, "err", err)
	}
	s.mu.Lock()
	delete(s.byID, id)
	s.mu.Unlock()
	return err == nil
}

// Origin says where a file comes from; exactly one of its fields is set (or none: a new file).
type Origin struct {
	Staged  *upload.Staged // a staging file a previous mount left unqueued
	Pending *upload.Status // an upload the engine resumed from its journal
}

// Spec is a file to make.
type Spec struct {
	Name string // the base name: what it is published under
	Rel  string // its path in uploads/
	Mode uint32
	From Origin
}

// NewFile is the one constructor of a file of uploads/: a new one (an empty staging file, recorded at
// Rel), one left by a previous mount in staging (Writing again if it was cut off, else Settling or Held
// and waiting as if just closed), or one the engine resumed (Queued, its data the engine's).
func (s *Set) NewFile(sp Spec) (*File, error) {
	now := s.o.Now()
	f := &File{set: s, name: sp.Name, rel: sp.Rel, mode: sp.Mode & 0o7777, atime: now, mtime: now, ctime: now}
	switch {
	case sp.From.Pending != nil:
		st := sp.From.Pending
		data, err := os.Open(st.Path)
		if err != nil {
			return nil, err
		}
		f.data, f.size, f.id, f.state = data, st.Size, st.ID, Queued
		if st.State == upload.StateRejected { // refused before the mount stopped: still refused
			f.state, f.note = Rejected, st.Error
		}
		f.atime, f.mtime, f.ctime = st.Created, st.Created, st.Created
		s.track(f, f.id)
		return f, nil
	case sp.From.Staged != nil:
		sg := sp.From.Staged
		data, err := os.OpenFile(sg.Path, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		f.data, f.owned, f.size, f.id = data, true, sg.Size, sg.Record.Replaces
		f.sealed = sg.Complete()
		f.atime, f.mtime, f.ctime = sg.ModTime, sg.ModTime, sg.ModTime
		f.state = CutOff
		if sg.Complete() {
			f.state = Settling
			if Temporary(f.name) != Plain {
				f.state = Held
			}
		}
		if sg.Record.Path != f.rel {
			if err := f.recordLocked(f.sealed); err != nil { // f is not shared yet
				s.o.Log.Error("record the new path of a recovered file", "path", f.rel, "err", err)
			}
		}
	default:
		if err := f.createLocked(); err != nil {
			return nil, err
		}
	}
	s.track(f, "")
	if f.state == Settling || f.state == Held {
		f.mu.Lock()
		f.armLocked()
		f.mu.Unlock()
	}
	return f, nil
}

// createLocked makes the staging file of a new file, recorded at its path.
func (f *File) createLocked() error {
	data, err := f.set.o.Engine.CreateStaging()
	if err != nil {
		return err
	}
	f.data, f.owned, f.state = data, true, Writing
	if err := f.recordLocked(false); err != nil {
		data.Close()
		_ = f.set.o.Engine.DiscardStaging(data.Name())
		return err
	}
	return nil
}

// reclaim asks the block cache for at least n bytes (reclaimAtLeast at the least) and reports
// whether it freed any.
func (s *Set) reclaim(n int64) bool {
	return s.o.Reclaim != nil && s.o.Reclaim(max(n, reclaimAtLeast)) > 0
}

// File is one file of uploads/.
type File struct {
	set *Set

	mu    sync.RWMutex // guards the fields below (RLock: reads of data)
	state State
	name  string   // the base name: what it is published under
	rel   string   // the path in uploads/, kept in the staging record while the data is ours
	data  *os.File // our staging file (owned) or the engine's pending file (read only)
	owned bool     // data is a staging file of ours, not handed to the engine
	// sealed: the staging record says the writer closed the file at size (data fsynced); cleared, in
	// the record first, before the content changes again.
	sealed bool
	// id is the engine's id of the version queued last, while it is pending: the one a Queued file
	// is, or the one a newer version (Writing, Settling, ...) replaces once it is queued itself.
	id             string
	takingBack     bool // Rename is taking the queued upload id back into a staging file (TakesBack)
	size           int64
	mode           uint32
	atime, mtime   time.Time
	ctime          time.Time
	writers, opens int // open handles (writers: those that may write)
	note           string
	timer          *time.Timer // the settle (or hold) timer, when armed
	tgen           uint64      // bumped at every arm or stop: a stale firing does nothing
	ph             prehash     // the sha512 of the staging data, computed as it is written (hash.go)
}

// toLocked applies ev. A refused transition is a bug of the caller: logged, and the state kept.
func (f *File) toLocked(ev Event) bool {
	next, err := Next(f.state, ev)
	if err != nil {
		if !f.state.Terminal() {
			f.set.o.Log.Error("upload state", "name", f.name, "err", err)
		}
		return false
	}
	if next != f.state {
		f.set.o.Log.Debug("upload state", "name", f.name, "from", f.state, "event", ev, "to", next)
	}
	f.state = next
	return true
}

// State is the file's state.
func (f *File) State() State {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state
}

// Attr is what stat shows.
type Attr struct {
	Size                int64
	Mode                uint32
	Nlink               uint32
	Atime, Mtime, Ctime time.Time
}

// Attr returns the file's attributes.
func (f *File) Attr() Attr {
	f.mu.RLock()
	defer f.mu.RUnlock()
	a := Attr{Size: f.size, Mode: f.mode, Nlink: 1, Atime: f.atime, Mtime: f.mtime, Ctime: f.ctime}
	if f.state.Terminal() {
		a.Nlink = 0
	}
	return a
}

// SetAttr changes what setattr changes; size (truncate) first, then mode and times. Each pointer
// is nil when not asked for.
func (f *File) SetAttr(size *int64, mode *uint32, atime, mtime *time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if size != nil {
		if err := f.truncateLocked(*size); err != nil {
			return err
		}
		if f.writers == 0 { // truncate(2) with no writer: the change is complete at once
			if err := f.closedLocked(); err != nil {
				return err
			}
		}
	}
	if mode != nil {
		f.mode = *mode & 0o7777
	}
	if mtime != nil {
		f.mtime = *mtime
	}
	if atime != nil {
		f.atime = *atime
	}
	f.ctime = f.set.o.Now()
	return nil
}

// Executable reports an x bit.
func (f *File) Executable() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.mode&0o111 != 0
}

// Name is the base name.
func (f *File) Name() string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.name
}

// recordLocked writes the staging record of owned data: its path and whether it is sealed.
func (f *File) recordLocked(sealed bool) error {
	r := upload.StagingRecord{Path: f.rel, Replaces: f.id, TakesBack: f.takingBack && f.id != ""}
	if sealed {
		r.Closed, r.Size = true, f.size
	}
	err := f.set.o.Engine.RecordStaging(f.data.Name(), r)
	if errors.Is(err, syscall.ENOSPC) && f.set.reclaim(0) {
		err = f.set.o.Engine.RecordStaging(f.data.Name(), r)
	}
	if err != nil {
		return err
	}
	f.sealed = sealed
	return nil
}

// sealLocked records that a writer closed the file: the data is fsynced, then the record says closed
// at this size, so a crash before the upload is queued loses nothing (the next start queues it).
func (f *File) sealLocked() error {
	if !f.owned || f.state.Terminal() || f.sealed {
		return nil
	}
	if err := f.data.Sync(); err != nil {
		return err
	}
	return f.recordLocked(true)
}

// unsealLocked runs before the content changes: the record says "open" again, so that a crash in the
// middle of the change is not taken for the closed version.
func (f *File) unsealLocked() error {
	if !f.sealed || !f.owned || f.state.Terminal() {
		return nil
	}
	return f.recordLocked(false)
}

// ownLocked makes data a staging file of ours, copying the first keep bytes of the current content
// when it belongs to the engine (a new version of a pending file).
func (f *File) ownLocked(keep int64) error {
	if f.owned {
		return nil
	}
	nf, err := f.set.o.Engine.CreateStaging()
	if err != nil {
		return err
	}
	keep = min(keep, f.size)
	old := f.data
	f.data = nf
	if !f.state.Terminal() { // the record first: the copy may be cut short by a crash
		err = f.recordLocked(false)
	}
	if err == nil {
		if err = copyRange(nf, old, keep); err != nil {
			err = fmt.Errorf("copy %s for a new version: %w", f.name, err)
		}
	}
	if err != nil {
		f.data = old
		nf.Close()
		_ = f.set.o.Engine.DiscardStaging(nf.Name())
		return err
	}
	if f.state.Terminal() {
		os.Remove(nf.Name()) // gone, written through a handle still open: nothing to keep
	}
	old.Close()
	f.owned, f.size = true, keep
	f.hashResetLocked() // another file: hashed again from 0 (the copy is in the page cache)
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

// modifiedLocked books a change of content that succeeded.
func (f *File) modifiedLocked(ev Event) {
	f.mtime = f.set.o.Now()
	f.ctime = f.mtime
	if f.state.Terminal() {
		return
	}
	f.toLocked(ev)
	f.note = ""
	f.stopLocked()
}

// failedLocked books a change of content that failed at off: the file is never published as it is.
func (f *File) failedLocked(off int64, err error) {
	if f.state.Terminal() {
		return
	}
	if f.state != WriteFailed {
		f.set.o.Log.Warn("write to uploads/ failed: the file will not be published until rewritten or removed",
			"path", f.rel, "offset", off, "err", err)
	}
	f.note = err.Error()
	f.toLocked(EvWriteFailed)
	f.stopLocked()
}

func (f *File) truncateLocked(size int64) error {
	if size == f.size && f.owned {
		f.modifiedLocked(f.rewriteEventLocked(size))
		return nil
	}
	err := f.ownLocked(size)
	if err == nil {
		err = f.unsealLocked()
	}
	if err == nil {
		err = f.data.Truncate(size)
	}
	if err != nil {
		f.failedLocked(min(size, f.size), err)
		return fmt.Errorf("truncate %s: %w", f.name, err)
	}
	ev := f.rewriteEventLocked(size)
	f.size = size
	f.hashChangedLocked(size)
	f.modifiedLocked(ev)
	return nil
}

// rewriteEventLocked is the event of a truncate to size: a rewrite when it empties a file whose write
// failed (cp over it, an O_TRUNC open). Keeping any of its bytes is not: the writer never finished it.
func (f *File) rewriteEventLocked(size int64) Event {
	if f.state == WriteFailed && size == 0 {
		return EvRewrite
	}
	return EvWrite
}

// WriteAt writes p at off. A write the disk refuses (full) first asks Reclaim for room, then fails
// and the file becomes WriteFailed.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.ownLocked(f.size)
	if err == nil {
		err = f.unsealLocked()
	}
	k := 0
	if err == nil {
		k, err = f.data.WriteAt(p, off)
		if errors.Is(err, syscall.ENOSPC) && f.set.reclaim(int64(len(p)-k)) {
			var k2 int
			k2, err = f.data.WriteAt(p[k:], off+int64(k))
			k += k2
		}
	}
	if k > 0 {
		f.size = max(f.size, off+int64(k))
		f.hashChangedLocked(off)
	}
	if err != nil {
		f.failedLocked(off+int64(k), err)
		if k > 0 {
			return k, nil // the short count tells the caller; its next write gets the error
		}
		return 0, fmt.Errorf("write %s: %w", f.name, err)
	}
	f.modifiedLocked(EvWrite)
	return k, nil
}

// ReadAt reads the current content.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if off >= f.size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), f.size-off)]
	k, err := f.data.ReadAt(p, off)
	if err != nil && k < len(p) {
		return 0, fmt.Errorf("read %s: %w", f.name, err)
	}
	return k, nil
}

// Fsync makes the staging data durable (it is synced again before it is queued).
func (f *File) Fsync() error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if !f.owned || f.state.Terminal() {
		return nil
	}
	return f.data.Sync()
}

// Open books an open handle; O_TRUNC on a writable one truncates.
func (f *File) Open(writable, trunc bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if writable && trunc {
		if err := f.truncateLocked(0); err != nil {
			return err
		}
	}
	f.opens++
	if writable {
		f.writers++
	}
	return nil
}

// Closed is a close (flush) of a writable handle: a changed file is sealed (its data and the record
// saying it was closed at this size made durable, so a crash cannot lose it; an error goes to the
// close) and waits the settle time. Safe to repeat (dup'ed descriptors flush several times).
func (f *File) Closed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closedLocked()
}

func (f *File) closedLocked() error {
	switch f.state {
	case Writing, Settling, Held, CutOff:
	default: // nothing changed (Queued, Rejected), or it must not be published (WriteFailed), or gone
		return nil
	}
	ev := EvClose
	if Temporary(f.name) != Plain {
		ev = EvCloseTemp
	}
	err := f.sealLocked()
	if err != nil {
		// Not durable as closed: not published either (a close that fails is a write that failed).
		f.failedLocked(f.size, err)
		return fmt.Errorf("close %s: %w", f.name, err)
	}
	f.toLocked(ev)
	f.armLocked()
	f.hashClosedLocked()
	return nil
}

// Release books the end of a handle; the last writer gone, a changed file is closed (if no flush did).
func (f *File) Release(writable bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens--
	if writable {
		f.writers--
		if f.writers == 0 {
			if err := f.closedLocked(); err != nil {
				f.set.o.Log.Error("seal", "path", f.rel, "err", err)
			}
		}
	}
	if f.state.Terminal() && f.opens == 0 {
		f.data.Close()
		f.set.untrack(f)
	}
}

// stopLocked stops the timer.
func (f *File) stopLocked() {
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	f.tgen++
}

// armLocked (re)starts the timer for the state: the settle time, or the hold time of a name that may
// be temporary. A name that certainly is temporary waits for its rename with no timer.
func (f *File) armLocked() {
	f.stopLocked()
	if f.set.final.Load() {
		return // the mount is gone: the next one takes over what is left
	}
	var d time.Duration
	switch {
	case f.state == Settling:
		d = f.set.o.Settle
	case f.state == Held && Temporary(f.name) == MaybeTemporary:
		d = f.set.o.Hold
	default:
		return
	}
	f.startLocked(d)
}

// startLocked (re)starts the timer to fire after d; a firing of an earlier timer does nothing.
func (f *File) startLocked(d time.Duration) {
	f.stopLocked()
	gen := f.tgen
	f.timer = time.AfterFunc(d, func() { f.fired(gen) })
}

// fired runs when the timer went off without a change: a held file is published under its own name,
// a settled one is queued, unless still open for writing (its release closes it again).
func (f *File) fired(gen uint64) {
	f.mu.Lock()
	if gen != f.tgen {
		f.mu.Unlock()
		return
	}
	f.timer = nil
	if f.state == Held && f.writers == 0 && f.toLocked(EvHoldOver) {
		f.armLocked()
		f.mu.Unlock()
		return
	}
	var old string
	if f.writers == 0 {
		old = f.enqueueLocked()
	}
	f.mu.Unlock()
	f.set.cancelReplaced(old, f)
}

// enqueueLocked hands a Settling file to the engine, and returns the superseded upload for the caller
// to cancel (outside the lock).
func (f *File) enqueueLocked() (superseded string) {
	if f.state != Settling {
		return ""
	}
	err := f.ownLocked(f.size)
	// The data must be on disk before the journal says it is there (sealed: synced at the close, and
	// unchanged since, or it would have been unsealed).
	if err == nil && !f.sealed {
		err = f.data.Sync()
	}
	var id string
	if err == nil {
		id, err = f.set.o.Engine.EnqueueVersion(f.data.Name(), f.name, f.size, f.hashSumLocked(), f.id)
	}
	if err == nil && f.id != "" {
		// A new version of a queued file: the old one's stale publications stay until this one is
		// published; a removal (Remove), not a rewrite, deletes them with the withdrawn upload.
		if herr := f.set.o.Engine.Handover(f.id, id); herr != nil {
			f.set.o.Log.Warn("hand the stale publications to the new version", "path", f.rel, "upload", id, "err", herr)
		}
	}
	if err != nil {
		if !errors.Is(err, upload.ErrClosed) {
			f.note = "not queued: " + err.Error()
			f.set.o.Log.Error("queue upload", "path", f.rel, "err", err)
			f.startLocked(max(enqueueRetry, f.set.o.Settle))
		}
		return ""
	}
	old := f.id
	f.toLocked(EvEnqueue)
	f.id, f.owned, f.sealed, f.note = id, false, false, ""
	f.hashResetLocked()
	f.set.track(f, id)
	f.set.o.Log.Debug("upload queued", "name", f.name, "upload", id, "size", f.size)
	return old
}

// goneLocked ends the file: no timer, the staging file removed (the descriptor stays open for
// handles still reading or writing it, and is closed by the last release, or by SettleAll(true)).
func (f *File) goneLocked() {
	f.stopLocked()
	if f.owned {
		if err := f.set.o.Engine.DiscardStaging(f.data.Name()); err != nil {
			f.set.o.Log.Error("remove staging file", "path", f.rel, "err", err)
		}
	}
	if f.opens == 0 {
		f.data.Close()
		f.set.untrack(f)
	}
}

// Remove is unlink (or replacement by a rename): the file is Cancelled at once and its pending
// upload, if any, withdrawn without waiting for the network.
func (f *File) Remove() {
	f.mu.Lock()
	if !f.toLocked(EvRemove) {
		f.mu.Unlock()
		return
	}
	id := f.id
	f.id = ""
	if id != "" && f.owned {
		// A new version of a queued upload, not queued yet: the engine withdraws the old version
		// and discards the new one's staging file together, the withdrawal journaled first and
		// naming the staging file. Discarding it here first and cancelling after (as before) let a
		// crash in between publish the old version on the next start; the other order, the new one.
		if f.set.cancelVersion(id, f.data.Name()) {
			f.owned = false // discarded
		}
		id = ""
	}
	f.goneLocked()
	f.mu.Unlock()
	f.set.cancel(id)
}

// Rename books a new base name and path in uploads/. A queued file is published under it (or, renamed
// to a temporary name, taken back into a staging file of ours); one renamed from a temporary name to a
// plain one is queued after the settle time.
func (f *File) Rename(name, rel string) error {
	f.mu.Lock()
	oldName, oldRel := f.name, f.rel
	f.name, f.rel = name, rel
	ev := EvRenamePlain
	if Temporary(name) != Plain {
		ev = EvRenameTemp
	}
	var cancel string
	var err error
	if ev == EvRenameTemp && f.state == Queued {
		// Taken back: copied to a staging file sealed as closed, so a crash cannot lose it. Its record
		// says so (TakesBack): a crash before the cancel below, the next start withdraws the upload
		// once the copy is sealed, or discards a copy not sealed yet (the rename never happened).
		f.takingBack = true
		if err = f.ownLocked(f.size); err == nil {
			if err = f.sealLocked(); err == nil {
				cancel, f.id = f.id, ""
			}
		}
		f.takingBack = false
	} else if f.owned && !f.state.Terminal() {
		err = f.recordLocked(f.sealed)
	}
	if err != nil {
		f.name, f.rel = oldName, oldRel
		f.mu.Unlock()
		return fmt.Errorf("rename %s: %w", oldName, err)
	}
	f.ctime = f.set.o.Now()
	if !f.state.Terminal() {
		was := f.state
		f.toLocked(ev)
		switch {
		case f.state == Queued:
			f.renameQueuedLocked()
		case f.state == Settling || f.state == Held:
			if f.writers == 0 && (was != f.state || ev == EvRenamePlain || f.state == Held) {
				f.armLocked()
			}
		}
	}
	f.mu.Unlock()
	f.set.cancel(cancel)
	return nil
}

// renameQueuedLocked renames the queued upload in the engine. The engine records the new name at once,
// even while an attempt is sending the old one (ErrPublishing): every later attempt carries it, and
// nothing has to ask again. If that attempt publishes the old name, the engine publishes the upload
// again under this one (the publication under the old name superseded); if it fails, the next attempt
// sends this one.
func (f *File) renameQueuedLocked() {
	err := f.set.o.Engine.Rename(f.id, f.name)
	switch {
	case err == nil, errors.Is(err, upload.ErrPublishing):
	case errors.Is(err, upload.ErrUnknown):
		// Gone from the engine (its confirmation taken, or cancelled): nothing is left to rename.
	default:
		f.set.o.Log.Error("rename upload", "upload", f.id, "err", err)
	}
}

// Moved books a new path in uploads/ (a folder above it was renamed).
func (f *File) Moved(rel string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rel = rel
	if f.owned && !f.state.Terminal() {
		if err := f.recordLocked(f.sealed); err != nil {
			f.set.o.Log.Error("record the new path", "path", rel, "err", err)
		}
	}
}

// Done books the engine's confirmation of upload st, published under st.Name: the name the engine
// sent, never the one the platform stored (which may differ: a name the platform stores differently
// must not look renamed, or it would be sent again and again). It returns the file that leaves
// uploads/ (Published), or nil: none of ours, or one written or renamed since. A renamed one stays
// Queued: the engine, told of the rename before this (Rename, under the file's lock), publishes the
// upload again under the new name and supersedes the publication under the old one.
//
// The engine keeps the upload's data and its done record until Done has returned (a rename until
// then is journaled with it, so a crash cannot lose it): call Done from the engine's OnDone itself,
// not later.
func (s *Set) Done(st upload.Status) *File {
	s.mu.Lock()
	f := s.byID[st.ID]
	delete(s.byID, st.ID)
	s.mu.Unlock()
	if f == nil {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.id != st.ID {
		return nil
	}
	if f.state == Queued && st.Name != f.name {
		// Renamed while the old name was on its way: the engine publishes it again (see above).
		s.track(f, st.ID)
		return nil
	}
	f.id = ""
	if f.state != Queued {
		return nil // a newer version is on its way: the engine books this publication with it (upload/version.go)
	}
	f.toLocked(EvPublish)
	f.goneLocked()
	return f
}

// Rejected books the engine's word that the platform refused upload st for good (a 4xx a retry would
// not change): the file is Rejected (failed-permanently), never sent again as it is; written again or
// renamed, it is a new version. A refusal of a name the file has left since is stale: the engine
// already sends the new name (Engine.Rename takes a rejected upload back).
func (s *Set) Rejected(st upload.Status) {
	s.mu.Lock()
	f := s.byID[st.ID]
	s.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.id != st.ID || f.state != Queued || st.Name != f.name {
		return
	}
	if f.toLocked(EvReject) {
		f.note = st.Error
		s.o.Log.Warn("upload refused by the platform for good: not retried; rename or rewrite it to try again",
			"path", f.rel, "upload", st.ID, "err", st.Error)
	}
}

// SettleAll queues now every closed file waiting for its settle time (and, when final, closes the
// data files: no handler comes any more). Called at unmount, before the engine closes, so nothing
// closed is left behind in staging.
func (s *Set) SettleAll(final bool) {
	if final {
		s.mu.Lock()
		if !s.final.Swap(true) { // before any file is looked at: a Done racing with this arms nothing
			close(s.stopHashing)
		}
		s.mu.Unlock()
		// The hashers stop before the data files they read are closed: one still reading would keep
		// its file's descriptor (and its disk) in use after the mount is gone. The sums they leave
		// unfinished are computed by the engine instead.
		s.hashing.Wait()
	}
	all := s.all()
	for _, f := range all {
		f.mu.Lock()
		f.stopLocked()
		var old string
		if f.writers == 0 { // one still open for writing stays in staging, shown back by the next mount
			old = f.enqueueLocked()
		}
		if final { // no handler comes any more: the next mount takes over what is left
			// Nor a retry of a failed Enqueue: its timer would outlive the mount, on closed data.
			f.stopLocked()
			f.data.Close()
		}
		f.mu.Unlock()
		s.cancelReplaced(old, f)
	}
}

// Armed counts the files with a timer running (settle, hold or a retry of a failed Enqueue): none once
// SettleAll(true) returned, whatever the engine confirms later.
func (s *Set) Armed() int {
	all := s.all()
	n := 0
	for _, f := range all {
		f.mu.RLock()
		if f.timer != nil {
			n++
		}
		f.mu.RUnlock()
	}
	return n
}

// Tracks says whether upload id is still waited for (its Done not booked yet).
func (s *Set) Tracks(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byID[id] != nil
}

// Describe is the user.rescale.upload attribute: where the file stands, in words.
func (f *File) Describe() string {
	f.mu.RLock()
	state, name, id, writers, note, timer := f.state, f.name, f.id, f.writers, f.note, f.timer != nil
	f.mu.RUnlock()
	settle := f.set.o.Settle
	switch state {
	case Cancelled:
		return "removed"
	case Published:
		return "done"
	case CutOff:
		return "not uploaded: " + CutOffText
	case WriteFailed:
		return "not uploaded: a write failed (" + note + "); rewrite it (cp over it) or delete it"
	case Rejected:
		return "failed permanently: " + note + RejectedHint
	case Held:
		if Temporary(name) == MaybeTemporary && timer {
			return "not uploaded yet: temporary name (uploaded under this name unless renamed within " +
				f.set.o.Hold.String() + ")"
		}
		return "not uploaded: temporary name (rename it to upload it)"
	case Settling:
		switch {
		case note != "":
			return note
		case writers > 0:
			return "writing"
		}
		return "settling (queued once left unwritten for " + settle.String() + ")"
	case Writing:
		return "writing"
	}
	st, ok := f.set.o.Engine.Status(id)
	if !ok {
		return "done"
	}
	return StatusText(st)
}

// RejectedHint ends the description of a Rejected file: what the user can do.
const RejectedHint = " (not retried; rename it or write it again to send a new version, or delete it)"

// CutOffText is the state of a file a crash of the mount cut off while it was being written.
const CutOffText = "cut off while being written when the mount stopped; rewrite it, or open and close it " +
	"for writing to upload it as it is, or delete it"

// StatusText is an engine status in words.
func StatusText(st upload.Status) string {
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
	case upload.StateRejected:
		return "failed permanently: " + st.Error + " (not retried; rename it to try another name, or delete it)"
	}
	return string(st.State)
}

// StagingName is a short unique suffix for a recovered file whose name is taken.
func StagingName(sg upload.Staged) string { return strings.TrimPrefix(filepath.Base(sg.Path), "w-") }

// Pending says what of uploads/ will be published without anyone doing anything more: the names of the
// files being written or settling, and how many are queued (handed to the engine and not yet confirmed
// through Done). A queued file counts until Done, which comes after the engine has finished it, so a
// watcher that waits while either is non-zero sees the file in the library when it stops waiting. Held
// (temporary names), failed, cut-off and rejected files wait for a person and are not counted.
func (s *Set) Pending() (settling []string, queued int) {
	all := s.all()
	settling = []string{}
	for _, f := range all { // File.mu after Set.mu is released: the lock order is File.mu -> Set.mu
		f.mu.RLock()
		switch f.state {
		case Writing, Settling:
			settling = append(settling, f.name)
		case Queued:
			queued++
		}
		f.mu.RUnlock()
	}
	slices.Sort(settling)
	return settling, queued
}
