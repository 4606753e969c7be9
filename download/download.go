// Package download is the Transfer Manager's background download: it copies the outputs of every job that
// completes while it runs (and, at start, of the jobs completed within MaxJobAge that are not downloaded
// yet) into Dir/<jobId>/<relativePath>, reading through the mount's block cache, so a file already read
// through the mount is not fetched twice and a download uses the same read-ahead, retries and request
// budget as `cp`.
//
// Failed jobs (Completed, but not successfully) are downloaded too: their logs are what users want to
// read. Snapshot says which ones failed.
//
// A file is written to "<name>.rescalefs-partial" (mode 0600: it is not the file yet), fsynced, and
// renamed to its final name only once its size and whole-file sha512 match the platform's. So a final name
// never holds a wrong or partial file. The final file gets the mode a new file gets from the process's
// umask (0666 &^ umask, usually 0644) and its dateUploaded as mtime; folders 0777 &^ umask.
//
// A partial file left by a crash is resumed: its bytes are kept, hashed again locally, and only the
// missing tail is fetched; if the whole then does not match, that file starts again from 0, once.
// Finished files are recorded per job in Dir/<jobId>/.rescalefs-done.json (path -> size, mtime, sha512),
// so a restart re-hashes nothing whose size and mtime did not change, and a job completely downloaded
// with the same Query is not even listed again.
//
// Names from the API are untrusted: a relativePath that is absolute, climbs with "..", holds a NUL or a
// component over 255 bytes, or takes one of our reserved names is skipped with a warning (counted in
// Snapshot); clashes are renamed "~<fileId>" as the mount does. Everything under Dir is accessed through
// an os.Root, so not even a symlink planted under Dir makes a write land outside it.
//
// This package knows nothing of FUSE: the mount wires it in and shows Snapshot in .rescalefs/status.
package download

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
)

// Options configure a Downloader. Client, Cache and Dir are required.
type Options struct {
	Client Platform
	Cache  *cache.Cache // the mount's cache: reads share its blocks, fetcher and limits
	Dir    string       // created when missing
	// Query, when not empty, keeps only files whose name contains it: a plain, case-sensitive
	// substring, as the mount's @text filter.
	Query string
	// MaxJobAge bounds, at start, how long ago a job may have completed to be downloaded; 0 = all.
	// Jobs that complete while the Downloader runs are always downloaded.
	MaxJobAge time.Duration
	// Poll is how often the jobs list is fetched, and the unit of the retry backoff; default 30s.
	Poll     time.Duration
	Parallel int // files downloaded at once across all jobs; default DefaultParallel
	// FileSeen, if set, is told the metadata of a job's files once listed, before they are read: a
	// direct storage source (remote.DirectSource.Register) then needs no GetFile per file.
	FileSeen func(...remote.File)
	Logger   *slog.Logger // nil = discard
	Now      func() time.Time
}

const (
	defaultPoll     = 30 * time.Second
	defaultParallel = DefaultParallel
	// maxRetryDelay caps the backoff of a job whose download failed.
	maxRetryDelay = 30 * time.Minute
	// maxActiveJobs bounds the jobs downloading at once: one can list or finish its tail while another
	// fills the file slots, and a backlog of hundreds of jobs does not list them all at once.
	maxActiveJobs = 2
	// statusParallel bounds the status-history requests of one round.
	statusParallel = 4
)

// platform is what the Downloader asks of the API; *remote.Client satisfies it.
type platform interface {
	ListJobs(ctx context.Context, filter map[string][]string) ([]remote.Job, error)
	JobStatuses(ctx context.Context, jobID string) (remote.Statuses, error)
	JobFiles(ctx context.Context, jobID, search string) ([]remote.File, error)
}

// Platform is what Options.Client must offer: *remote.Client satisfies it, and tests wrap it
// (remotetest.Faulty) to make any call fail, stall or be slow.
type Platform interface {
	ListJobs(ctx context.Context, filter url.Values) ([]remote.Job, error)
	JobStatuses(ctx context.Context, jobID string) (remote.Statuses, error)
	JobFiles(ctx context.Context, jobID, search string) ([]remote.File, error)
}

var _ Platform = (*remote.Client)(nil)

// clientPlatform adapts a Platform (ListJobs takes url.Values, a named map type) to platform.
type clientPlatform struct{ c Platform }

func (p clientPlatform) ListJobs(ctx context.Context, filter map[string][]string) ([]remote.Job, error) {
	return p.c.ListJobs(ctx, filter)
}
func (p clientPlatform) JobStatuses(ctx context.Context, id string) (remote.Statuses, error) {
	return p.c.JobStatuses(ctx, id)
}
func (p clientPlatform) JobFiles(ctx context.Context, id, search string) ([]remote.File, error) {
	return p.c.JobFiles(ctx, id, search)
}

// Downloader downloads completed jobs' outputs in the background. Its methods are safe for concurrent use.
type Downloader struct {
	opts     Options
	api      platform
	cache    *cache.Cache
	log      *slog.Logger
	now      func() time.Time
	fileSem  chan struct{} // Parallel slots: one per file being checked or downloaded
	largeSem chan struct{} // maxLargeFiles slots: one per file larger than readSize being downloaded
	wake     chan struct{} // 1-buffered: Notify asks the loop for a round now

	// writeAt writes to a partial file; tests replace it to simulate a full disk.
	writeAt func(f *os.File, p []byte, off int64) (int, error)

	// Set by Start, read-only afterwards.
	root     *os.Root
	fileMode os.FileMode // what a new file gets from the umask
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the loop and every job goroutine

	// mu protects started, closed, jobs (and every field of each *job), notified, active, pollErr,
	// lastPoll and totals.
	mu       sync.Mutex
	started  bool
	closed   bool
	jobs     map[string]*job
	notified map[string]bool // ids Notify named since the last round
	active   int             // jobs downloading now
	pollErr  string          // the last round's failure to list jobs, "" when it worked
	lastPoll time.Time       // when the jobs list was last fetched successfully
	totals   Totals          // the counters since New; the per-state job counts are filled in by Totals
}

// New checks opts and returns a Downloader; Start starts it.
func New(opts Options) (*Downloader, error) {
	if opts.Client == nil {
		return nil, errors.New("download: no Client")
	}
	return newDownloader(opts, clientPlatform{opts.Client})
}

// newDownloader is New with the platform given (nil for Files, which never lists).
func newDownloader(opts Options, api platform) (*Downloader, error) {
	if opts.Cache == nil {
		return nil, errors.New("download: no Cache")
	}
	if opts.Dir == "" {
		return nil, errors.New("download: no Dir")
	}
	if opts.MaxJobAge < 0 {
		return nil, fmt.Errorf("download: negative MaxJobAge %v", opts.MaxJobAge)
	}
	if opts.Poll <= 0 {
		opts.Poll = defaultPoll
	}
	if opts.Parallel <= 0 {
		opts.Parallel = defaultParallel
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Downloader{
		opts:     opts,
		api:      api,
		cache:    opts.Cache,
		log:      opts.Logger.With("component", "download"),
		now:      opts.Now,
		fileSem:  make(chan struct{}, opts.Parallel),
		largeSem: make(chan struct{}, min(opts.Parallel, maxLargeFiles)),
		wake:     make(chan struct{}, 1),
		writeAt:  (*os.File).WriteAt,
		jobs:     make(map[string]*job),
		notified: make(map[string]bool),
	}, nil
}

// Start creates Dir if needed, checks that it is writable, and starts polling and downloading in the
// background until ctx is cancelled or Close is called. It returns at once.
func (d *Downloader) Start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.closed {
		return errors.New("download: Start called twice, or after Close")
	}
	if err := d.openDir(); err != nil {
		return err
	}
	d.ctx, d.cancel = context.WithCancel(ctx)
	d.started = true
	d.wg.Add(1)
	go d.loop()
	d.log.Info("automatic downloads started", "dir", d.opts.Dir, "query", d.opts.Query, "maxJobAge", d.opts.MaxJobAge)
	return nil
}

// openDir creates Dir if needed, opens it as the root of every path, and learns the mode new files
// get. d.mu is held, or d is not shared yet.
func (d *Downloader) openDir() error {
	if err := os.MkdirAll(d.opts.Dir, 0o777); err != nil {
		return fmt.Errorf("download dir: %w", err)
	}
	root, err := os.OpenRoot(d.opts.Dir)
	if err != nil {
		return fmt.Errorf("download dir: %w", err)
	}
	mode, err := probeFileMode(root)
	if err != nil {
		root.Close()
		return fmt.Errorf("download dir %s is not writable: %w", d.opts.Dir, err)
	}
	d.root, d.fileMode = root, mode
	return nil
}

// Notify tells the Downloader that job jobID may have completed (the mount's poller saw it change), so
// it checks that job now instead of at its next poll. Optional; unknown or running jobs are harmless.
func (d *Downloader) Notify(jobID string) {
	d.mu.Lock()
	d.notified[jobID] = true
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Close stops polling and downloading and waits for it. Partial files stay, to be resumed by the next
// start. Safe to call more than once, and without Start.
func (d *Downloader) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	started := d.started
	d.mu.Unlock()
	if !started {
		return nil
	}
	d.cancel()
	d.wg.Wait()
	return d.root.Close()
}
