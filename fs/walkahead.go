package fs

import (
	"cmp"
	"container/list"
	"slices"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// Read-ahead across files. A program that copies a folder (cp -r, rsync -a, tar c) opens its files one
// after the other, each open waiting for its first block: thousands of small files cost thousands of
// round trips in a row. When the opens of a folder follow an order we know, the next small files in
// that order are fetched in parallel before they are opened, so the walk finds them in the cache.
//
// The orders: the listing (readdir) order, which tar and rsync follow (rsync sorts by name, as the
// listing is), and the inode order, which cp -r follows (GNU cp sorts a folder's entries by inode
// number before copying them, to read a disk in order).
//
// A walk is recognised once two opens in a row of one folder are neighbours in one order, or when a
// folder is listed or its first file in an order opened right after a walk of another folder (a
// recursive copy going on to the next folder: cp and tar list a folder just before opening its files,
// so its first file is fetched on that listing). It is followed while each open lands a little ahead of the previous
// one in that order (a program may skip files: rsync those already up to date); any other open ends it,
// and nothing more is fetched for that folder until a walk is recognised again. One open alone never
// fetches anything else, so a program reading one file of a large folder costs that file only.
//
// What is fetched ahead and not yet opened is bounded in files and bytes, and counted for one folder
// at a time: the one opened last (a walk is in one folder at a time; files fetched ahead for a folder
// the program left stay in the cache for when it comes back, but no longer hold the bounds, so an
// interrupted walk does not block the next one); the one first file a listing fetches is not
// counted. Files larger than SmallFile are left to their own
// sequential read-ahead once opened. The blocks land in the cache as read-ahead, whose memory the
// cache bounds (cache.Options: Parallel * MaxRequestSize).

// WalkAheadOptions bound the read-ahead across files. Zero values take the defaults.
type WalkAheadOptions struct {
	Files     int   // files fetched ahead of the walks and not yet opened, at most; default 32; negative disables
	Bytes     int64 // bytes of those files, at most; default 64 MiB
	SmallFile int64 // only files of at most this size are fetched ahead; default 8 MiB (a block: one request each)
}

const (
	defaultWalkFiles     = 32
	defaultWalkBytes     = 64 << 20
	defaultWalkSmallFile = 8 << 20
	// maxWalkFolders bounds the folders whose walk state is kept (least recently opened go first): a
	// recursive copy is in one folder at a time, plus the parents it comes back to.
	maxWalkFolders = 64
	// maxWalkScan bounds the files one open looks at past the walk's frontier (a folder of large
	// files is not scanned whole on every open).
	maxWalkScan = 256
	// walkCarryOver is how soon after an open of a walked folder another folder must be listed or
	// its first file opened to continue the walk there at once: a recursive copy moves on within
	// milliseconds (seconds on a loaded machine); a program opening that file later is not walking.
	walkCarryOver = 5 * time.Second
)

// walkOrder is one order of a folder's files.
type walkOrder struct {
	files []*node
	pos   map[*node]int
}

// folderWalk is the walk state of one folder.
type folderWalk struct {
	dir    *node
	orders []walkOrder // [0] the listing order, [1] the inode order
	elem   *list.Element

	last     *node           // the file opened last; nil before the first open
	follow   int             // index in orders of the order being followed; -1 when not walking
	frontier int             // in orders[follow]: files before this position have been considered
	ahead    map[*node]int64 // files fetched ahead and not yet opened -> their size
	// firstFetched: listed fetched the folder's first file (once: a folder listed again is not
	// fetched again).
	firstFetched bool
}

// walkAhead is the FUSE-free policy: told every open of a file (with its folder) and every listing of
// a folder, it starts fetching the files a walk will open next. Safe for concurrent use; mu is a leaf
// (prefetch is called without it).
type walkAhead struct {
	o        WalkAheadOptions
	ino      func(*node) uint64 // the inode number readdir gives a file
	prefetch func(*remote.File) // starts fetching a whole file in the background; must not block
	now      func() time.Time

	mu         sync.Mutex // guards the fields below and every folderWalk
	folders    map[*node]*folderWalk
	lru        *list.List  // *folderWalk, most recently opened first
	lastWalked *folderWalk // the folder of the previous open, if it was being walked then
	lastOpen   time.Time   // when that open was
	holder     *folderWalk // the folder whose files fetched ahead count against the bounds
	files      int         // files fetched ahead and not yet opened, of holder
	bytes      int64       // their bytes
}

func newWalkAhead(o WalkAheadOptions, ino func(*node) uint64, prefetch func(*remote.File), now func() time.Time) *walkAhead {
	if o.Files == 0 {
		o.Files = defaultWalkFiles
	}
	if o.Bytes <= 0 {
		o.Bytes = defaultWalkBytes
	}
	if o.SmallFile <= 0 {
		o.SmallFile = defaultWalkSmallFile
	}
	return &walkAhead{o: o, ino: ino, prefetch: prefetch, now: now, folders: map[*node]*folderWalk{}, lru: list.New()}
}

// opened records that file (a child of dir) was opened, and starts fetching the files the walk will
// open next, if any. The prefetch calls are made without the lock.
func (w *walkAhead) opened(dir, file *node) {
	if w == nil || w.o.Files < 0 || dir == nil || file == nil || file.file == nil {
		return
	}
	next := w.plan(dir, file)
	for _, f := range next {
		w.prefetch(f)
	}
}

// listed records that dir was listed (readdir). Right after a walk of another folder, that is a
// recursive copy about to open dir's files: the first one in the walk's order is fetched now, so the
// first open of each folder does not wait for it either.
func (w *walkAhead) listed(dir *node) {
	if w == nil || w.o.Files < 0 || dir == nil {
		return
	}
	if f := w.planListed(dir); f != nil {
		w.prefetch(f)
	}
}

func (w *walkAhead) planListed(dir *node) *remote.File {
	w.mu.Lock()
	defer w.mu.Unlock()
	prev := w.lastWalked
	if prev == nil || prev.follow < 0 || w.now().Sub(w.lastOpen) > walkCarryOver {
		return nil
	}
	fw := w.folderLocked(dir)
	if fw == nil || fw == prev || fw.last != nil {
		return nil // nothing to walk, the folder being walked, or one opened before: not a folder starting
	}
	first := fw.orders[prev.follow].files[0]
	if size := first.file.DecryptedSize; size == 0 || size > w.o.SmallFile || fw.firstFetched {
		return nil
	}
	fw.firstFetched = true
	return first.file
}

// plan is opened's decision: the files to fetch now.
func (w *walkAhead) plan(dir, file *node) []*remote.File {
	w.mu.Lock()
	defer w.mu.Unlock()
	fw := w.folderLocked(dir)
	if fw == nil {
		return nil
	}
	w.lru.MoveToFront(fw.elem)
	now := w.now()
	prevWalked := w.lastWalked
	if now.Sub(w.lastOpen) > walkCarryOver {
		prevWalked = nil
	}
	w.lastWalked, w.lastOpen = nil, now
	if w.holder != fw {
		if w.holder != nil {
			w.releaseAllLocked(w.holder)
		}
		w.holder = fw
	}
	w.releaseLocked(fw, file) // opened now: no longer ahead

	if fw.follow >= 0 {
		o := fw.orders[fw.follow]
		p, ok := o.pos[file]
		if lp := o.pos[fw.last]; !ok || p <= lp || p > lp+w.o.Files+1 {
			w.stopLocked(fw) // the program went elsewhere: this walk is over
		}
	}
	if fw.follow < 0 && fw.last != nil {
		for i, o := range fw.orders {
			if p, lp := o.pos[file], o.pos[fw.last]; p == lp+1 {
				fw.follow = i
				break
			}
		}
	}
	if fw.follow < 0 && fw.last == nil && prevWalked != nil && prevWalked != fw {
		// A walk of another folder, then the first file of this one: a recursive copy going on.
		for i, o := range fw.orders {
			if o.files[0] == file {
				fw.follow = i
				break
			}
		}
	}
	fw.last = file
	if fw.follow < 0 {
		return nil
	}
	w.lastWalked = fw
	o := fw.orders[fw.follow]
	p := o.pos[file]
	// Files the walk skipped are not coming: they no longer count against the bounds.
	for n := range fw.ahead {
		if o.pos[n] < p {
			w.releaseLocked(fw, n)
		}
	}
	fw.frontier = max(fw.frontier, p+1)
	var out []*remote.File
	for scanned := 0; fw.frontier < len(o.files) && scanned < maxWalkScan; scanned++ {
		n := o.files[fw.frontier]
		size := n.file.DecryptedSize
		if size > w.o.SmallFile || size == 0 {
			fw.frontier++ // its own read-ahead serves it once opened; an empty file needs nothing
			continue
		}
		if w.files >= w.o.Files || w.bytes+size > w.o.Bytes {
			break // full: the next opens make room
		}
		fw.ahead[n] = size
		w.files++
		w.bytes += size
		fw.frontier++
		out = append(out, n.file)
	}
	return out
}

// folderLocked returns dir's walk state, making it (and evicting the least recently used) if needed.
func (w *walkAhead) folderLocked(dir *node) *folderWalk {
	if fw, ok := w.folders[dir]; ok {
		return fw
	}
	var files []*node
	for _, c := range dir.list {
		if c.file != nil {
			files = append(files, c)
		}
	}
	if len(files) < 2 {
		return nil // nothing to walk
	}
	// Each file's number once (a SHA-256 under the process's table lock), not once per comparison.
	inos := make(map[*node]uint64, len(files))
	for _, n := range files {
		inos[n] = w.ino(n)
	}
	byIno := slices.Clone(files)
	slices.SortStableFunc(byIno, func(a, b *node) int { return cmp.Compare(inos[a], inos[b]) })
	fw := &folderWalk{dir: dir, follow: -1, ahead: map[*node]int64{},
		orders: []walkOrder{newWalkOrder(files), newWalkOrder(byIno)}}
	fw.elem = w.lru.PushFront(fw)
	w.folders[dir] = fw
	for w.lru.Len() > maxWalkFolders {
		old := w.lru.Remove(w.lru.Back()).(*folderWalk)
		w.stopLocked(old)
		delete(w.folders, old.dir)
		if w.lastWalked == old {
			w.lastWalked = nil
		}
		if w.holder == old {
			w.holder = nil
		}
	}
	return fw
}

func newWalkOrder(files []*node) walkOrder {
	o := walkOrder{files: files, pos: make(map[*node]int, len(files))}
	for i, n := range files {
		o.pos[n] = i
	}
	return o
}

func (w *walkAhead) releaseLocked(fw *folderWalk, n *node) {
	size, ok := fw.ahead[n]
	if !ok {
		return
	}
	delete(fw.ahead, n)
	w.files--
	w.bytes -= size
}

// releaseAllLocked: fw's files fetched ahead no longer count against the bounds (they stay in the
// cache for whoever opens them).
func (w *walkAhead) releaseAllLocked(fw *folderWalk) {
	for n := range fw.ahead {
		w.releaseLocked(fw, n)
	}
}

// stopLocked ends fw's walk: what was fetched ahead stays in the cache for whoever opens it, but no
// longer holds the bounds.
func (w *walkAhead) stopLocked(fw *folderWalk) {
	w.releaseAllLocked(fw)
	fw.follow, fw.frontier = -1, 0
}

// walkStats is a snapshot for tests and the status file.
type walkStats struct {
	Folders int   // folders with walk state
	Files   int   // files fetched ahead and not yet opened, counted against the bounds
	Bytes   int64 // their bytes
}

func (w *walkAhead) stats() walkStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return walkStats{Folders: len(w.folders), Files: w.files, Bytes: w.bytes}
}
