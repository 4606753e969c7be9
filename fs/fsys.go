package fs

import (
	"context"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
)

// platform is the part of remote.Client the tree uses; node tests drive it with a fake.
type platform interface {
	ListJobs(ctx context.Context, filter url.Values) ([]remote.Job, error)
	GetJob(ctx context.Context, jobID string) (remote.Job, error)
	JobStatuses(ctx context.Context, jobID string) (remote.Statuses, error)
	JobFiles(ctx context.Context, jobID, search string) ([]remote.File, error)
	RunFiles(ctx context.Context, jobID, runID, search string) ([]remote.File, error) // runs.go
	LibraryFiles(ctx context.Context, search string) ([]remote.File, error)

	// A running job's live working directory (live.go).
	JobRuns(ctx context.Context, jobID string) ([]remote.Run, error)
	DirectoryContents(ctx context.Context, jobID, runID string) ([]remote.LiveFile, error)
	Tail(ctx context.Context, jobID, runID, path string) ([]byte, error)
	TailRange(ctx context.Context, jobID, runID, path string, off, n int64) ([]byte, bool, error)
}

// Platform is what Options.Client must offer: the calls the tree makes and the client's health for
// .rescalefs/status. *remote.Client satisfies it; tests wrap it (remotetest.Faulty) to make any call
// fail, stall or be slow.
type Platform interface {
	platform
	Health() remote.HealthSnapshot
}

var _ Platform = (*remote.Client)(nil)

// fileReader reads one open file: a cache.Reader, which detects sequential access per handle.
type fileReader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// ReadRef is ReadAt returning the bytes read, which may be the cache's own (read-only) block
	// rather than p: the FUSE reply is written from them without a copy into p first.
	ReadRef(ctx context.Context, p []byte, off int64) ([]byte, error)
	Close() error
}

// fsys is one mount's state, shared by all its nodes.
//
// Lock order (outer first); no lock is held across a platform call or a kernel notification:
//
//	jobTree.mu -> jobsModel.mu
//	liveFile.mu, liveHandle.mu, library.mu, fsys.listMu, filterMemo.mu, errLog.mu, walkAhead.mu: leaves
type fsys struct {
	opts   Options
	client platform
	log    *slog.Logger
	now    func() time.Time

	// ctx lives as long as the mount: platform calls shared by several callers run under it (a
	// caller's context dies with an interrupt), and Unmount cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	calls  flightGroup // the shared calls under ctx, which the mount's shutdown waits for (flight.go)

	newReader func(f *remote.File) fileReader
	liveTTL   time.Duration // how long a running job's listing is reused

	model *jobsModel
	lib   library
	memo  filterMemo
	errs  errLog
	noted sync.Map // names and ids already logged once

	listMu   sync.Mutex // protects listCall (its callers too) and listSent
	listCall *flight[time.Time]
	listSent time.Time        // when the last jobs list applied was sent (zero: none yet)
	jobCalls flights[jobInfo] // a job's statuses, a job looked up by id: one call per job at a time

	mounted time.Time // the mtime of the fixed folders

	// The dynamic folders the poller invalidates entries of; set in the root's OnAdd.
	jobsDir, completedDir, failedDir, byNameDir *fusefs.Inode

	walk  *walkAhead // read-ahead across the files of a folder walked in order (walkahead.go)
	stats transferStats
	io    ioState // uploads/ and open files, for .rescalefs/status (uploads.go, downloads.go)
}

// transferStats counts what the mount served, for .rescalefs/status.
type transferStats struct {
	opens, reads, bytesRead, readErrors atomic.Int64
}

func newFsys(opts Options, client platform, newReader func(*remote.File) fileReader) *fsys {
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	f := &fsys{
		opts:      opts,
		client:    client,
		log:       opts.Logger,
		now:       opts.Clock.Now,
		newReader: newReader,
		liveTTL:   min(opts.Poll, 10*time.Second),
		model:     newJobsModel(),
	}
	f.model.lru.max = opts.MaxTreeFiles
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.calls.ctx = f.ctx
	f.mounted = f.now()
	if c := opts.Cache; c != nil {
		wo := opts.WalkAhead
		if wo.Bytes <= 0 {
			// Within the cache's read-ahead memory (part of --memory), leaving room for the
			// sequential read-ahead of the files being read.
			wo.Bytes = min(defaultWalkBytes, c.PrefetchBudget()/2)
		}
		f.walk = newWalkAhead(wo, func(n *node) uint64 { return ino("file:" + n.file.ID) },
			func(rf *remote.File) { c.Prefetch(cache.Object{ID: rf.ID, Size: rf.DecryptedSize}) }, time.Now)
	}
	return f
}
