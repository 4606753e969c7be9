package fs

import (
	"context"
	"encoding/json"
	"os"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// statusFile is .rescalefs/status: the mount's live state as JSON, read by `rescalefs status` and by
// anyone curious. Each open takes a snapshot; the handle is DIRECT_IO, so its size need not match what
// stat said a moment earlier and nothing stale stays in the page cache.
type statusFile struct {
	fusefs.Inode
	base
}

// Status is the JSON of .rescalefs/status.
type Status struct {
	Time      time.Time       `json:"time"`
	Mounted   time.Time       `json:"mounted"`
	Jobs      int             `json:"jobs"`
	Completed int             `json:"completed"`
	Transfers TransferStatus  `json:"transfers"`
	Cache     *cache.Stats    `json:"cache,omitempty"`
	Uploads   []upload.Status `json:"uploads"`  // pending, damaged and recently published uploads
	Settling  []string        `json:"settling"` // files of uploads/ being written or settling: not queued yet
	// Publishing counts the files of uploads/ handed to the engine and not yet moved to files/ (an
	// upload the engine has finished stays counted until the mount has shown it in files/).
	Publishing int              `json:"publishing"`
	Downloads  []DownloadStatus `json:"downloads"`       // files open for reading, live files of running jobs included
	Extra      any              `json:"extra,omitempty"` // Options.StatusExtra
	// Cleanups counts the uploads over whose leftovers on the platform rescalefs still has to delete
	// (a cancelled upload's publication, stale publications under names a file left): journaled,
	// retried, after a restart too.
	Cleanups int `json:"cleanups,omitempty"`
	// Kept are the files left in the library after a lost answer that rescalefs cannot tell from
	// another tool's upload of the same bytes, so did not delete (status_kept.go); until the mount
	// stops.
	Kept []KeptFile `json:"kept,omitempty"`
	// PID is the mount process: `rescalefs unmount` waits for it to release the cache directory.
	PID int `json:"pid"`
	// Platform says when the platform last answered and how many calls wait on it (and why).
	Platform *remote.HealthSnapshot `json:"platform,omitempty"`
	// Waiting says how many reads wait on the platform and why (waiting.go).
	Waiting Waiting `json:"waiting"`
}

// TransferStatus counts what the mount served to programs.
type TransferStatus struct {
	Opens      int64 `json:"opens"`
	Reads      int64 `json:"reads"`
	BytesRead  int64 `json:"bytesRead"`
	ReadErrors int64 `json:"readErrors"`
}

func (f *fsys) status() Status {
	all := f.model.list()
	s := Status{
		Time:      f.now().UTC(),
		Mounted:   f.mounted.UTC(),
		Jobs:      len(all),
		Completed: len(completedJobs(all, 0, f.now())),
		Transfers: TransferStatus{
			Opens:      f.stats.opens.Load(),
			Reads:      f.stats.reads.Load(),
			BytesRead:  f.stats.bytesRead.Load(),
			ReadErrors: f.stats.readErrors.Load(),
		},
	}
	if f.opts.Cache != nil {
		st := f.opts.Cache.Stats()
		s.Cache = &st
	}
	s.Uploads = []upload.Status{}
	s.Settling = []string{}
	if f.io.up != nil {
		s.Uploads = f.io.up.eng.Snapshot()
		s.Settling, s.Publishing = f.io.up.set.Pending()
		s.Cleanups = f.io.up.eng.Cleanups()
		s.Kept = f.keptFiles(f.io.up.eng.Kept())
	}
	s.Downloads = f.io.dl.list()
	if f.opts.StatusExtra != nil {
		s.Extra = f.opts.StatusExtra()
	}
	s.PID = os.Getpid()
	if f.opts.Client != nil {
		h := f.opts.Client.Health()
		s.Platform = &h
	}
	s.Waiting = waitingOf(s.Cache, s.Platform, f.now())
	return s
}

// Status is what .rescalefs/status says now (for the --metrics collector, which reads it per scrape).
func (m *Mounted) Status() Status { return m.fsys.status() }

func (f *fsys) statusJSON() []byte {
	b, err := json.MarshalIndent(f.status(), "", "  ")
	if err != nil {
		b = []byte(`{"error": "` + err.Error() + `"}`)
	}
	return append(b, '\n')
}

func (s *statusFile) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = fileMode
	out.Nlink = 1
	out.Size = uint64(len(s.f.statusJSON()))
	t := s.f.now()
	setTimes(&out.Attr, t)
	out.SetTimeout(noCache)
	return 0
}

func (s *statusFile) Access(_ context.Context, mask uint32) syscall.Errno { return fileAccess(mask) }

func (s *statusFile) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&(syscall.O_TRUNC|syscall.O_APPEND) != 0 {
		return nil, 0, syscall.EROFS
	}
	return &bytesHandle{data: s.f.statusJSON()}, fuse.FOPEN_DIRECT_IO, 0
}

// bytesHandle serves a snapshot taken at open.
type bytesHandle struct{ data []byte }

func (h *bytesHandle) Read(_ context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(h.data)) {
		return fuse.ReadResultData(nil), 0
	}
	end := min(off+int64(len(dest)), int64(len(h.data)))
	return fuse.ReadResultData(h.data[off:end]), 0
}
