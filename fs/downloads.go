package fs

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// downloads tracks the files open for reading, for .rescalefs/status: bytes served and the furthest
// offset read, per open file.
type downloads struct {
	mu   sync.Mutex // guards open, live and next
	open map[uint64]*trackedReader
	live map[*liveHandle]struct{} // open handles of running jobs' live files
	next uint64
}

// DownloadStatus is one file open for reading, as .rescalefs/status shows it.
type DownloadStatus struct {
	FileID string    `json:"fileId"`
	Name   string    `json:"name"`
	Size   int64     `json:"size"`
	Read   int64     `json:"bytesRead"` // bytes the platform or the cache served to this open file
	Offset int64     `json:"offset"`    // the furthest byte read: progress of a sequential copy
	Opened time.Time `json:"opened"`
	// LastRead is when a read last returned bytes (zero: none yet): a copy in progress reads every
	// moment; a file left open (tail -f at the end, an idle viewer) does not.
	LastRead time.Time `json:"lastRead,omitzero"`
	Handles  int       `json:"handles"` // open handles of this file
	// Live: a running job's live file (tail -f of process_output.log): it has no end to wait for.
	Live bool `json:"live,omitempty"`
}

// trackedReader counts what one open file read.
type trackedReader struct {
	fileReader
	d      *downloads
	key    uint64
	file   *remote.File
	opened time.Time
	readProgress
	now  func() time.Time
	once sync.Once
}

// readProgress is what one open handle served, for .rescalefs/status: a tracked reader's or a live
// file's.
type readProgress struct {
	read   atomic.Int64
	offset atomic.Int64 // the furthest byte read
	last   atomic.Int64 // unix nanoseconds of the last read that returned bytes
}

// served books n bytes read at off at time now.
func (p *readProgress) served(now time.Time, off int64, n int) {
	if n <= 0 {
		return
	}
	p.read.Add(int64(n))
	p.last.Store(now.UnixNano())
	end := off + int64(n)
	for {
		cur := p.offset.Load()
		if end <= cur || p.offset.CompareAndSwap(cur, end) {
			return
		}
	}
}

// addTo merges what p served into s (several handles of one file).
func (p *readProgress) addTo(s *DownloadStatus) {
	s.Read += p.read.Load()
	s.Offset = max(s.Offset, p.offset.Load())
	if l := p.last.Load(); l != 0 && time.Unix(0, l).After(s.LastRead) {
		s.LastRead = time.Unix(0, l)
	}
}

// track wraps newReader so every open file is listed until closed.
func (d *downloads) track(now func() time.Time, newReader func(*remote.File) fileReader) func(*remote.File) fileReader {
	return func(f *remote.File) fileReader {
		r := &trackedReader{fileReader: newReader(f), d: d, file: f, opened: now(), now: now}
		d.mu.Lock()
		if d.open == nil {
			d.open = map[uint64]*trackedReader{}
		}
		d.next++
		r.key = d.next
		d.open[r.key] = r
		d.mu.Unlock()
		return r
	}
}

func (r *trackedReader) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	n, err := r.fileReader.ReadAt(ctx, p, off)
	r.served(r.now(), off, n)
	return n, err
}

func (r *trackedReader) ReadRef(ctx context.Context, p []byte, off int64) ([]byte, error) {
	b, err := r.fileReader.ReadRef(ctx, p, off)
	r.served(r.now(), off, len(b))
	return b, err
}

func (r *trackedReader) Close() error {
	r.once.Do(func() {
		r.d.mu.Lock()
		delete(r.d.open, r.key)
		r.d.mu.Unlock()
	})
	return r.fileReader.Close()
}

// list is the open files, one entry per file (several handles of a file merged), oldest first.
func (d *downloads) list() []DownloadStatus {
	d.mu.Lock()
	byID := map[string]*DownloadStatus{}
	for _, r := range d.open {
		s := byID[r.file.ID]
		if s == nil {
			s = &DownloadStatus{FileID: r.file.ID, Name: r.file.Name, Size: r.file.DecryptedSize, Opened: r.opened}
			byID[r.file.ID] = s
		}
		s.Handles++
		r.addTo(s)
		if r.opened.Before(s.Opened) {
			s.Opened = r.opened
		}
	}
	for h := range d.live {
		if h.switched.Load() {
			continue // its reader of the uploaded output is listed above
		}
		key := "live:" + h.lf.jobID + "/" + h.lf.runID + "/" + h.lf.path
		s := byID[key]
		if s == nil {
			s = &DownloadStatus{FileID: key, Name: h.lf.path, Opened: h.opened, Live: true}
			byID[key] = s
		}
		s.Handles++
		h.addTo(s)
		s.Size = max(s.Size, h.lf.lastSize())
		if h.opened.Before(s.Opened) {
			s.Opened = h.opened
		}
	}
	d.mu.Unlock()
	out := make([]DownloadStatus, 0, len(byID))
	for _, s := range byID {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b DownloadStatus) int {
		if c := a.Opened.Compare(b.Opened); c != 0 {
			return c
		}
		return strings.Compare(a.FileID, b.FileID)
	})
	return out
}

// trackLive lists an open live file until untrackLive.
func (d *downloads) trackLive(h *liveHandle) {
	d.mu.Lock()
	if d.live == nil {
		d.live = map[*liveHandle]struct{}{}
	}
	d.live[h] = struct{}{}
	d.mu.Unlock()
}

func (d *downloads) untrackLive(h *liveHandle) {
	d.mu.Lock()
	delete(d.live, h)
	d.mu.Unlock()
}

// ioState is the mount's upload and download bookkeeping (fsys.io).
type ioState struct {
	up *uploads // nil when uploads/ is read-only (no engine)
	dl downloads
}

// registering passes the files of every listing to Options.FileSeen.
type registering struct {
	platform
	seen func(...remote.File)
}

func (r registering) JobFiles(ctx context.Context, jobID, search string) ([]remote.File, error) {
	files, err := r.platform.JobFiles(ctx, jobID, search)
	if err == nil {
		r.seen(files...)
	}
	return files, err
}

func (r registering) LibraryFiles(ctx context.Context, search string) ([]remote.File, error) {
	files, err := r.platform.LibraryFiles(ctx, search)
	if err == nil {
		r.seen(files...)
	}
	return files, err
}
