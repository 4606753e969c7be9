package fs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

// A running job's folder is its live working directory: the listing is the run's directory-contents,
// and a file's bytes are what the tail endpoint returns, so `tail -f jobs/<id>/process_output.log`
// follows the run. Once the run is over, the folder is the job's uploaded outputs (the poller drops the
// live tree and the kernel's entries when it sees the job complete).
//
// Requests are shared, whatever the number of readers: one directory-contents per job per
// liveInterval (the job's tree, tree.go/listing.go), and one tail per open live file per liveInterval.
//
// Sizes. directory-contents gives a path and a resource, nothing more [C], so a live file's size is
// what the last tail of it returned. Getattr fetches only for a file somebody has open (`tail -f` and
// `less` fstat their descriptor; `ls -l` of a live folder must not download every file): a live file
// never opened shows its last known size, 0 at first. Attributes are never cached by the kernel
// (noCache) and reads are DIRECT_IO, so a growing file is seen growing and no stale page is ever
// served; a read serves the same bytes the size came from, so a reader never sees the file shrink.

// liveInterval is how long a live listing or a live file's bytes are reused: at most one
// directory-contents request per job, and one tail request per open file, per interval.
const liveInterval = 2 * time.Second

// runActive says whether a job in status s has a run whose live files the platform serves: from
// Started until Completed (a failing run's Stopping included).
func runActive(s string) bool {
	switch s {
	case remote.StatusStarted, remote.StatusValidated, remote.StatusExecuting, remote.StatusStopping:
		return true
	}
	return false
}

// liveRun returns the id of the job's run in progress (dateStarted set, dateCompleted null), the most
// recently started when several claim to be; ErrNotFound when none is.
func (f *fsys) liveRun(ctx context.Context, jobID string) (string, error) {
	runs, err := f.client.JobRuns(ctx, jobID)
	if err != nil {
		return "", err
	}
	var best *remote.Run
	for i := range runs {
		r := &runs[i]
		if r.Live() && (best == nil || r.DateStarted.After(best.DateStarted.Time)) {
			best = r
		}
	}
	if best == nil {
		return "", fmt.Errorf("job %s: no run in progress: %w", jobID, remote.ErrNotFound)
	}
	return best.ID, nil
}

// liveTree lists a running job's working directory. The run id is kept from one listing to the next;
// when the run it names is no longer live, the runs are asked once more (a job may run again).
// ErrNotFound: no run is in progress (it has not started, or is over).
func (f *fsys) liveTree(ctx context.Context, t *jobTree, jobID string) (*node, error) {
	t.mu.Lock()
	run := t.runID
	t.mu.Unlock()
	cached := run != ""
	for {
		if run == "" {
			var err error
			run, err = f.liveRun(ctx, jobID)
			t.mu.Lock()
			t.runID = run
			t.mu.Unlock()
			if err != nil {
				return nil, err
			}
		}
		entries, err := f.client.DirectoryContents(ctx, jobID, run)
		if err != nil {
			if isNotFound(err) && cached {
				cached, run = false, ""
				continue
			}
			return nil, err
		}
		sizes := make(map[string]int64, len(entries))
		for _, e := range entries {
			if e.Size != nil {
				sizes[e.Path] = *e.Size
			}
		}
		root, notes := buildLiveTree(entries, func(path string, comps []string) *liveFile {
			lf := t.liveFileFor(f, jobID, run, path, comps)
			if n, ok := sizes[path]; ok {
				lf.noteListedSize(n)
			}
			return lf
		})
		f.logNotes(jobID, notes)
		return root, nil
	}
}

// liveFileFor returns the liveFile of a run's path, the same one from one listing to the next, so its
// size and open handles survive a refresh of the listing.
func (t *jobTree) liveFileFor(f *fsys, jobID, runID, path string, comps []string) *liveFile {
	t.mu.Lock()
	defer t.mu.Unlock()
	key := runID + "\x00" + path
	lf := t.live[key]
	if lf == nil {
		if t.live == nil {
			t.live = map[string]*liveFile{}
		}
		lf = &liveFile{f: f, jobID: jobID, runID: runID, path: path, comps: comps}
		t.live[key] = lf
	}
	return lf
}

// buildLiveTree makes a tree of a run's live files from directory-contents. Paths are cleaned as
// output paths are (names.SplitRelPath), so a live file sits where its uploaded output will. A path listed
// twice is shown once; two paths cleaned to one name (or a file's name taken by a folder) keep the
// first, by original path, and give the others a "~<hash of the path>" suffix; entries with nothing
// usable ("", "/", "..") are left out. get returns the liveFile of an original path.
func buildLiveTree(entries []remote.LiveFile, get func(path string, comps []string) *liveFile) (*node, []treeNote) {
	type item struct {
		path  string
		comps []string
		key   string
	}
	var notes []treeNote
	items := make([]item, 0, len(entries))
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if seen[e.Path] {
			continue
		}
		seen[e.Path] = true
		comps := names.SplitRelPath(e.Path)
		if len(comps) == 0 {
			notes = append(notes, treeNote{FileID: "live:" + e.Path, Original: e.Path, Reason: "unusable live path"})
			continue
		}
		key := strings.Join(comps, "/")
		if key != e.Path && key != strings.TrimPrefix(e.Path, "./") {
			notes = append(notes, treeNote{FileID: "live:" + e.Path, Original: e.Path, Name: key, Reason: "unsafe path"})
		}
		items = append(items, item{e.Path, comps, key})
	}
	slices.SortFunc(items, func(a, b item) int {
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	root := newDir("")
	for _, it := range items { // folders first: they keep their names
		root.mkdirs(it.comps[:len(it.comps)-1])
	}
	for _, it := range items {
		d := root.walk(it.comps[:len(it.comps)-1])
		name := it.comps[len(it.comps)-1]
		if d.children[name] != nil {
			sum := sha256.Sum256([]byte(it.path))
			name = names.WithSuffix(name, hex.EncodeToString(sum[:4]))
			notes = append(notes, treeNote{FileID: "live:" + it.path, Original: it.path, Name: name, Reason: "duplicate name"})
			if d.children[name] != nil {
				continue
			}
		}
		d.children[name] = &node{name: name, live: get(it.path, it.comps)}
	}
	root.finish()
	return root, notes
}

// liveFile is one file of a running job's working directory.
type liveFile struct {
	f                  *fsys
	jobID, runID, path string   // path: as directory-contents gives it, what tail is asked for
	comps              []string // its path in the job's tree: where its uploaded output appears

	mu       sync.Mutex // protects the fields below; a leaf, never held across a platform call
	data     []byte     // the last liveWindow bytes of the file as last seen, kept while it is open
	base     int64      // the file offset of data[0]
	haveData bool
	size     int64     // the file's length as last seen (0 until a tail is made)
	mtime    time.Time // when size was last seen to change
	fetched  time.Time // when the last tail ended (successfully or not)
	noRange  bool      // the platform ignored Range on the last tail: whole-file tails are paced
	call     *flight[liveBytes]
	opens    int          // open handles
	final    *remote.File // the uploaded output of the same path, once the run is over
}

// liveBytes is a window of a live file: data holds bytes [base, base+len(data)), the end of the file.
type liveBytes struct {
	data []byte
	base int64
}

// liveWindow bounds the bytes an open live file keeps: the end of the file, which is what `tail -f`
// and `less +F` read. Reads before it are fetched on demand (a ranged tail) and not kept.
const liveWindow = 16 << 20

// interval is how long the last tail is reused. A platform that honours Range sends only the new
// bytes each time; one that ignores it sends the whole file, so the interval grows with the file (one
// liveInterval per liveWindow of file): a 200 MB log is then fetched about every 26 s, about 8 MB/s,
// instead of every 2 s (100 MB/s). Called with mu held.
func (lf *liveFile) intervalLocked() time.Duration {
	if !lf.noRange {
		return liveInterval
	}
	return liveInterval * time.Duration(1+lf.size/liveWindow)
}

// noteListedSize takes the size a listing gave, so `ls -l` of a live folder shows sizes without a tail
// of every file. An open file keeps the size of the bytes it holds: a read must find what stat said.
func (lf *liveFile) noteListedSize(n int64) {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.haveData || n < 0 || n == lf.size {
		return
	}
	lf.size, lf.mtime = n, lf.f.now()
}

func (lf *liveFile) ino() uint64 { return ino("live:" + lf.jobID + "/" + lf.runID + "/" + lf.path) }

func (lf *liveFile) describe() string { return "live file " + lf.jobID + "/" + lf.path }

// fetch returns the file's latest bytes: those of the last tail when it is recent (or failed that
// recently), else of a new one, shared by every caller. While the file is open a new tail asks only
// for the bytes after those already held (Range); the first asks for the whole file.
func (lf *liveFile) fetch(ctx context.Context) (liveBytes, error) {
	lf.mu.Lock()
	if lf.haveData && lf.f.now().Sub(lf.fetched) < lf.intervalLocked() {
		d := liveBytes{lf.data, lf.base}
		lf.mu.Unlock()
		return d, nil
	}
	c := lf.call
	if c == nil {
		from := int64(0)
		if lf.haveData {
			from = lf.size
		}
		c = startFlight(&lf.f.calls, func(ctx context.Context) (liveBytes, error) {
			b, ranged, err := lf.f.client.TailRange(ctx, lf.jobID, lf.runID, lf.path, from, -1)
			lf.mu.Lock()
			defer lf.mu.Unlock()
			if err != nil {
				return liveBytes{}, err
			}
			if from > 0 {
				lf.noRange = !ranged
			}
			return lf.appendLocked(from, b), nil
		}, func(_ liveBytes, err error) {
			lf.mu.Lock()
			defer lf.mu.Unlock()
			lf.call = nil
			lf.fetched = lf.f.now()
		})
		lf.call = c
	}
	lf.mu.Unlock()
	return c.wait(ctx)
}

// appendLocked records b, the file's bytes from offset from on (from is 0 or the size last seen), and
// returns the window now held.
func (lf *liveFile) appendLocked(from int64, b []byte) liveBytes {
	var data []byte
	switch {
	case from == 0:
		data = b
	case lf.haveData && from == lf.size:
		data = append(lf.data, b...)
	default:
		// The window moved meanwhile (a concurrent refresh): keep what is held.
		return liveBytes{lf.data, lf.base}
	}
	size := from + int64(len(b))
	if from == 0 {
		size = int64(len(b))
	}
	base := size - int64(len(data))
	if len(data) > liveWindow {
		data = append([]byte(nil), data[len(data)-liveWindow:]...)
		base = size - liveWindow
	}
	if size != lf.size || lf.mtime.IsZero() {
		lf.size, lf.mtime = size, lf.f.now()
	}
	if lf.opens > 0 {
		lf.data, lf.base, lf.haveData = data, base, true
	}
	return liveBytes{data, base}
}

// content is what a read or an fstat of the open file sees: the latest live bytes, or once the run is
// over (tail answers not found) the uploaded output of the same path. Until that output is listed, and
// when a refresh fails, the bytes already shown are served again.
func (lf *liveFile) content(ctx context.Context) (data liveBytes, final *remote.File, err error) {
	lf.mu.Lock()
	final = lf.final
	lf.mu.Unlock()
	if final != nil {
		return liveBytes{}, final, nil
	}
	data, err = lf.fetch(ctx)
	if err == nil {
		return data, nil, nil
	}
	if isNotFound(err) {
		if final = lf.findFinal(ctx); final != nil {
			return liveBytes{}, final, nil
		}
	}
	lf.mu.Lock()
	stale, have := liveBytes{lf.data, lf.base}, lf.haveData
	lf.mu.Unlock()
	if have && ctx.Err() == nil {
		if !isNotFound(err) {
			lf.f.logErr("refresh "+lf.describe()+" (serving the previous bytes)", err)
		}
		return stale, nil, nil
	}
	return liveBytes{}, nil, err
}

// findFinal looks for the uploaded output at the live file's path, once the run is over.
func (lf *liveFile) findFinal(ctx context.Context) *remote.File {
	root, _, err := lf.f.jobFiles(ctx, lf.jobID)
	if err != nil {
		return nil
	}
	n := root.walk(lf.comps)
	if n == nil || n.file == nil {
		return nil
	}
	lf.mu.Lock()
	lf.final, lf.data, lf.base, lf.haveData = n.file, nil, 0, false
	lf.mu.Unlock()
	return n.file
}

func (lf *liveFile) open() {
	lf.mu.Lock()
	lf.opens++
	lf.mu.Unlock()
}

// release forgets the bytes when the last handle closes: only open files keep theirs.
func (lf *liveFile) release() {
	lf.mu.Lock()
	if lf.opens--; lf.opens == 0 {
		lf.data, lf.base, lf.haveData = nil, 0, false
	}
	lf.mu.Unlock()
}

// lastSize is the length of the last tail.
func (lf *liveFile) lastSize() int64 {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return lf.size
}

func (lf *liveFile) isOpen() bool {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return lf.opens > 0
}

// fillAttr fills the attributes as last known: the uploaded output's once switched to it, else the
// last tail's length, and as mtime the time that length last changed (the mount time before any).
func (lf *liveFile) fillAttr(a *fuse.Attr) {
	lf.mu.Lock()
	final, size, mtime := lf.final, lf.size, lf.mtime
	lf.mu.Unlock()
	if final != nil {
		fileAttr(a, final)
		a.Blksize = requestBlksize // still read through this node, DIRECT_IO
		return
	}
	if mtime.IsZero() {
		mtime = lf.f.mounted
	}
	a.Mode = fileMode
	a.Nlink = 1
	a.Size = uint64(max(size, 0))
	a.Blksize = requestBlksize
	a.Blocks = (a.Size + 511) / 512
	setTimes(a, mtime)
}

// liveNode is a live file of a running job (see liveFile).
type liveNode struct {
	fusefs.Inode
	base
	lf *liveFile
}

func newLiveNode(b base, lf *liveFile) (*liveNode, fusefs.StableAttr) {
	return &liveNode{base: b, lf: lf}, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: lf.ino()}
}

// Getattr refreshes the size of an open file (`tail -f` polls with fstat, and must see it grow); a
// file nobody has open shows what is known. A failed refresh is not an error: the last size stands.
func (n *liveNode) Getattr(ctx context.Context, fh fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if fh != nil || n.lf.isOpen() {
		_, _, _ = n.lf.content(ctx) // the attributes below are the last known ones either way
	}
	n.lf.fillAttr(&out.Attr)
	out.SetTimeout(noCache)
	return 0
}

// Open: read-only, DIRECT_IO (the page cache would keep bytes of a file that grows).
func (n *liveNode) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if errno := openReadOnly(flags); errno != 0 {
		return nil, 0, errno
	}
	n.f.stats.opens.Add(1)
	n.lf.open()
	h := &liveHandle{f: n.f, lf: n.lf, opened: n.f.now()}
	n.f.io.dl.trackLive(h)
	return h, fuse.FOPEN_DIRECT_IO, 0
}

func (n *liveNode) Access(_ context.Context, mask uint32) syscall.Errno { return fileAccess(mask) }

func (n *liveNode) xattrs() []xattr {
	return compact([]xattr{{"job", n.lf.jobID}, {"run", n.lf.runID}, {"live", "true"}})
}

func (n *liveNode) Getxattr(_ context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return getxattr(n.xattrs(), attr, dest)
}

func (n *liveNode) Listxattr(_ context.Context, dest []byte) (uint32, syscall.Errno) {
	return listxattr(n.xattrs(), dest)
}

// liveHandle is an open live file.
type liveHandle struct {
	f  *fsys
	lf *liveFile

	mu sync.Mutex // protects r
	r  fileReader // reads the uploaded output once the file has switched to it; nil before

	closeOnce sync.Once

	// What it served, for .rescalefs/status (downloads.go).
	opened time.Time
	readProgress
	// switched: r exists; the open file is listed through r's tracking from then on, not as live.
	switched atomic.Bool
}

func (h *liveHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	h.f.stats.reads.Add(1)
	data, final, err := h.lf.content(ctx)
	if err != nil {
		h.f.stats.readErrors.Add(1)
		return nil, h.f.errno("read "+h.lf.describe(), err)
	}
	if final != nil {
		return h.readFinal(ctx, final, dest, off)
	}
	end := data.base + int64(len(data.data))
	if off >= end {
		return fuse.ReadResultData(nil), 0
	}
	if off < data.base {
		// Before the window kept: fetched for this read only.
		b, _, err := h.f.client.TailRange(ctx, h.lf.jobID, h.lf.runID, h.lf.path, off, min(int64(len(dest)), data.base-off))
		if err != nil {
			h.f.stats.readErrors.Add(1)
			return nil, h.f.errno("read "+h.lf.describe(), err)
		}
		n := copy(dest, b)
		h.f.stats.bytesRead.Add(int64(n))
		return fuse.ReadResultData(dest[:n]), 0
	}
	n := copy(dest, data.data[off-data.base:])
	h.f.stats.bytesRead.Add(int64(n))
	h.served(h.f.now(), off, n)
	return fuse.ReadResultData(dest[:n]), 0
}

// readFinal reads the uploaded output through the block cache, as an output file's handle does.
func (h *liveHandle) readFinal(ctx context.Context, final *remote.File, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= final.DecryptedSize {
		return fuse.ReadResultData(nil), 0
	}
	h.mu.Lock()
	if h.r == nil {
		h.r = h.f.newReader(final)
		h.switched.Store(true)
	}
	r := h.r
	h.mu.Unlock()
	n, err := r.ReadAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		h.f.stats.readErrors.Add(1)
		return nil, h.f.errno("read "+final.ID, err)
	}
	h.f.stats.bytesRead.Add(int64(n))
	h.served(h.f.now(), off, n)
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *liveHandle) Flush(context.Context) syscall.Errno { return 0 }

func (h *liveHandle) Release(context.Context) syscall.Errno {
	h.closeOnce.Do(func() {
		h.f.io.dl.untrackLive(h)
		h.lf.release()
		h.mu.Lock()
		if h.r != nil {
			h.r.Close()
		}
		h.mu.Unlock()
	})
	return 0
}
