package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/download"
	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/internal/units"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// readyFDEnv names the descriptor on which a background child reports "ready" or the error that stopped
// it; the parent waits on it so `rescalefs mount` returns only once the mount works (or says why not).
const readyFDEnv = "RESCALEFS_READY_FD"

// authCheckTimeout bounds the key check before mounting. A URL that refuses connections or does not
// resolve fails the mount; a platform that accepts connections but does not answer in time is an outage,
// and the mount goes ahead (serving what the cache holds) with a warning.
const authCheckTimeout = 30 * time.Second

// minPoll is the floor of --poll: a round lists every job and fetches the statuses of those that
// changed, and --poll 1ns made 1,748 API requests in 10 s.
const minPoll = time.Second

// errNoAnswer: the key check got no answer in time.
var errNoAnswer = errors.New("no answer")

// mountConfig is everything `mount` and `demo` take from flags.
type mountConfig struct {
	apiKey, apiURL, profile string
	configPath              string // the apiconfig file
	foreground              bool
	options                 []string
	cacheDir                string
	cacheSize, memory       int64
	blockSize, readahead    int64
	parallel                int
	poll                    time.Duration
	maxJobAgeDays           int
	logFile, logLevel       string
	autoDownload, autoQuery string
	debugFUSE               bool
	uploadParallel          int
	uploadSettle            time.Duration
	directReads             bool
	metricsAddr             string        // --metrics: loopback address of the Prometheus endpoint; "" = off
	authTimeout             time.Duration // 0 = authCheckTimeout
}

// addServeFlags registers the flags that shape a served mount, shared by `mount` and `demo`.
func addServeFlags(fl *pflag.FlagSet, c *mountConfig) {
	fl.StringSliceVarP(&c.options, "option", "o", nil, "mount options passed to FUSE, e.g. -o ro (allow_other lets root in too; other users stay out)")
	fl.StringVar(&c.cacheDir, "cache-dir", defaultCacheDir(), "block cache and staging directory (kept across mounts)")
	fl.Var(newSizeValue(10<<30, &c.cacheSize), "cache-size", "disk cache bound")
	fl.Var(newSizeValue(512<<20, &c.memory), "memory", "memory for block data, cached and in flight (the mount stays within this plus about 64MiB)")
	fl.Var(newSizeValue(8<<20, &c.blockSize), "block-size", "cache block size (4MiB to 16MiB)")
	fl.Var(newSizeValue(256<<20, &c.readahead), "readahead", "largest sequential read-ahead window per open file")
	fl.IntVar(&c.parallel, "parallel", 0, "most ranged requests in flight across the mount (0: 32 reading from storage, 16 through /contents/)")
	fl.DurationVar(&c.poll, "poll", 30*time.Second, "how often the job list and job states are refreshed")
	fl.IntVar(&c.maxJobAgeDays, "max-job-age", 0, "completed/ shows jobs completed within this many days (0: all)")
	fl.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fl.BoolVar(&c.debugFUSE, "debug-fuse", false, "log every FUSE request (very verbose)")
	fl.IntVar(&c.uploadParallel, "upload-parallel", upload.DefaultUploadParallel, "parts in flight, all uploads together (each holds one encrypted part in memory)")
	// Hidden: for tests that need a file closed but not yet queued (crash recovery).
	fl.DurationVar(&c.uploadSettle, "upload-settle", rfs.DefaultUploadSettle, "how long a closed file in uploads/ stays unwritten before it is queued")
	_ = fl.MarkHidden("upload-settle")
	fl.StringVar(&c.metricsAddr, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics, ADDR a loopback address such as 127.0.0.1:9464 (off by default)")
	// On by default: /contents/ counts against the platform's file-access limit (90,000 requests an
	// hour), which bounds a copy of many small files to about 25 files/s whatever we do; storage has no
	// such limit. A file whose storage read fails is read through /contents/ (DirectSource).
	fl.BoolVar(&c.directReads, "direct-reads", true, "read files straight from storage (S3) when the platform gives credentials, outside the API's request limit, falling back to /contents/ per file (--direct-reads=false: always /contents/)")
}

// newMountFlags is the flag set of `mount`; the mount.fuse3 helper mode reads it too, to tell rescalefs
// options from FUSE ones.
func newMountFlags(c *mountConfig) *pflag.FlagSet {
	fl := pflag.NewFlagSet("mount", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	fl.StringVar(&c.apiKey, "api-key", "", "Rescale API key (prefer RESCALE_API_KEY or ~/.config/rescale/apiconfig: flags show in ps)")
	fl.StringVar(&c.apiURL, "api-url", "", "platform URL, e.g. https://eu.rescale.com (default "+defaultAPIURL+")")
	fl.StringVar(&c.profile, "profile", "", "profile section of ~/.config/rescale/apiconfig")
	fl.StringVar(&c.configPath, "config", defaultConfigPath(), "the apiconfig file of profiles (for system mounts: /etc/fstab's config=...)")
	fl.BoolVarP(&c.foreground, "foreground", "f", false, "stay attached until unmounted (for systemd)")
	fl.StringVar(&c.logFile, "log-file", defaultLogFile(), "where a background mount logs")
	fl.StringVar(&c.autoDownload, "auto-download", "", "copy the outputs of jobs as they complete into DIR/<jobId>/ (and, at start, of jobs completed within --max-job-age)")
	fl.StringVar(&c.autoQuery, "auto-query", "", "with --auto-download: only files whose name contains TEXT")
	addServeFlags(fl, c)
	// Hidden: for tests that mount while the platform is frozen.
	fl.DurationVar(&c.authTimeout, "auth-timeout", authCheckTimeout, "how long the key check waits for an answer")
	_ = fl.MarkHidden("auth-timeout")
	return fl
}

func runMount(args []string, stdout, stderr io.Writer) int {
	var c mountConfig
	fl := newMountFlags(&c)
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs mount [flags] MOUNTPOINT\n\nMounts the Rescale platform at MOUNTPOINT (an existing empty folder) and returns once it is ready.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
	}
	if code, done := parseFlags(fl, args, 1, "mount", usage, stdout, stderr); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "rescalefs mount: %v\n", err)
		return exitFailure
	}
	if err := checkServeFlags(c); err != nil {
		fmt.Fprintf(stderr, "rescalefs mount: %v\n", err)
		return exitUsage
	}
	creds, err := resolveCredentials(credentialInputs{FlagKey: c.apiKey, FlagURL: c.apiURL, Profile: c.profile,
		Getenv: os.Getenv, ConfigPath: c.configPath})
	if err != nil {
		return fail(err)
	}
	for _, w := range creds.Warnings {
		fmt.Fprintf(stderr, "rescalefs mount: warning: %s\n", w)
	}
	if creds.KeySource == "flag" {
		fmt.Fprintln(stderr, "rescalefs mount: warning: --api-key is visible to other users in the process list; prefer RESCALE_API_KEY or ~/.config/rescale/apiconfig")
	}
	mountpoint, err := checkMountpoint(fl.Arg(0))
	if err != nil {
		return fail(err)
	}
	if err := checkAutoDownload(c, mountpoint); err != nil {
		fmt.Fprintf(stderr, "rescalefs mount: %v\n", err)
		return exitUsage
	}
	if !c.foreground {
		return startBackground(fl, creds, mountpoint, c.logFile, stdout, stderr)
	}
	ready := readyReporter()
	err = serveMount(context.Background(), c, creds, mountpoint, stderr, ready)
	if err != nil {
		ready(err)
		return fail(err)
	}
	return exitOK
}

// checkServeFlags refuses values of the serving flags (shared by mount and demo) that cannot work, before
// anything is started.
func checkServeFlags(c mountConfig) error {
	if _, err := parseLogLevel(c.logLevel); err != nil {
		return err
	}
	if c.metricsAddr != "" {
		if err := checkMetricsAddr(c.metricsAddr); err != nil {
			return err
		}
	}
	if c.maxJobAgeDays < 0 {
		return fmt.Errorf("--max-job-age %d: want 0 (all) or a number of days", c.maxJobAgeDays)
	}
	if c.blockSize < 4<<20 || c.blockSize > 16<<20 {
		return fmt.Errorf("--block-size %s is outside 4MiB to 16MiB", units.Exact(c.blockSize))
	}
	if c.poll < minPoll {
		return fmt.Errorf("--poll %v: want at least %v (each round lists every job)", c.poll, minPoll)
	}
	if c.uploadParallel < 1 {
		return fmt.Errorf("--upload-parallel %d: want at least 1", c.uploadParallel)
	}
	if c.parallel < 0 {
		return fmt.Errorf("--parallel %d: want at least 1 (0: the default)", c.parallel)
	}
	_, err := splitMemory(c.memory, c.requests())
	return err
}

// requests returns how many ranged requests of what size the mount keeps in flight at most. Storage
// reads (--direct-reads) are not counted against the API's request limit, so they are made one block
// at a time and more at once: the emulated WAN gives each connection 25 MiB/s, as real links give a
// TCP stream a share, and line rate needs more streams, not longer ones; smaller requests also
// finish one by one, so the read-ahead is refilled steadily rather than in waves. Through /contents/
// each request counts against the platform's limit, so they are larger and fewer.
func (c *mountConfig) requests() requestPlan {
	p := requestPlan{parallel: c.parallel, size: contentsRequestSize}
	if c.directReads {
		p.size, p.splitMisses = c.blockSize, storageSplitMisses
	}
	if p.parallel == 0 {
		p.parallel = contentsParallel
		if c.directReads {
			// By bytes, not count: 32 of 8 MiB blocks, 16 of 16 MiB, 64 of 4 MiB, so every
			// --block-size fits the default --memory.
			p.parallel = int(max(1, storageInFlight/c.blockSize))
		}
	}
	return p
}

// requestPlan: at most parallel ranged requests of size bytes in flight.
type requestPlan struct {
	parallel    int
	size        int64
	splitMisses int // cache.Options.SplitMisses
}

// parseFlags parses args, handles --help (exit 0) and bad usage (exit 2, one line), and checks that
// exactly nargs positional arguments remain. done reports that the caller should return code.
func parseFlags(fl *pflag.FlagSet, args []string, nargs int, name string, usage func(io.Writer), stdout, stderr io.Writer) (code int, done bool) {
	err := fl.Parse(args)
	switch {
	case errors.Is(err, pflag.ErrHelp):
		usage(stdout)
		return exitOK, true
	case err != nil:
		fmt.Fprintf(stderr, "rescalefs %s: %v (see rescalefs %s --help)\n", name, err, name)
		return exitUsage, true
	case nargs >= 0 && fl.NArg() != nargs:
		fmt.Fprintf(stderr, "rescalefs %s: want %d argument(s), got %d (see rescalefs %s --help)\n", name, nargs, fl.NArg(), name)
		return exitUsage, true
	}
	return 0, false
}

// serveMount builds client, cache and tree, mounts, reports readiness, and serves until unmounted or
// signalled (SIGINT/SIGTERM unmount cleanly) or ctx ends (it unmounts the same way).
func serveMount(ctx context.Context, c mountConfig, creds credentials, mountpoint string, logw io.Writer, ready func(error)) error {
	logger, err := newLogger(logw, c.logLevel)
	if err != nil {
		return err
	}
	// Signals are caught from the start: a SIGTERM that arrives while mounting must not kill the process
	// with the default action and leave the mount behind; it is handled once the mount exists.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	defer catchBrokenPipe()() // a log line to a closed pipe must not kill the process and strand the mount
	hc := remote.NewHTTPClient()
	obs := newPlatformObserver(hc.Transport, creds.URL)
	hc.Transport = obs
	client, err := remote.New(remote.Options{BaseURL: creds.URL, APIKey: creds.Key, Logger: logger, HTTPClient: hc})
	if err != nil {
		return err
	}
	if err := checkKey(ctx, client, creds.URL, c.authTimeout, logw); errors.Is(err, errNoAnswer) {
		logger.Warn("mounting without checking the key: the platform did not answer", "err", err)
	} else if err != nil {
		return err
	}
	if err := checkFallback(c.cacheDir); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	life := newMountLife(logger)
	defer life.end()
	accountDir, unlock, err := lockAccountDir(c.cacheDir, creds)
	if err != nil {
		return err
	}
	life.unlock = unlock
	plan := c.requests()
	budget, err := splitMemory(c.memory, plan)
	if err != nil {
		return err
	}
	// A soft limit makes the garbage collector work harder near the budget instead of letting the heap
	// grow to twice the live block data, as the default GOGC would.
	debug.SetMemoryLimit(c.memory + runtimeOverhead)
	var src cache.Source = client
	var direct *remote.DirectSource
	if c.directReads {
		direct = remote.NewDirectSource(client, remote.DirectSourceOptions{Logger: logger,
			S3: remote.S3Options{HTTPClient: obs.storageClient(remote.Policy{})}})
		src = direct
		life.direct = direct
	}
	blocks, err := cache.New(src, cache.Options{
		BlockSize: c.blockSize, MemoryBytes: budget.tier, MaxRequestSize: budget.request, MinRequestSize: budget.request,
		DiskDir: filepath.Join(accountDir, "blocks"), DiskBytes: c.cacheSize,
		Parallel: plan.parallel, SplitMisses: plan.splitMisses, Readahead: c.readahead, Permanent: permanentError, Logger: logger,
	})
	if err != nil {
		return err
	}
	life.blocks = blocks
	var dl *download.Downloader
	if c.autoDownload != "" {
		var seen func(...remote.File) // the listed files' metadata, sparing the direct source a GetFile each
		if direct != nil {
			seen = direct.Register
		}
		if dl, err = startAutoDownload(life.ctx, c, client, blocks, seen, logger); err != nil {
			return err
		}
		life.dl = dl
	}
	// The upload engine resumes what the journal holds once started, which is after the mount: its
	// OnDone needs the mount.
	var mounted atomic.Pointer[rfs.Mounted]
	if c.metricsAddr != "" {
		stop, err := serveMetrics(c.metricsAddr, metricsSource{obs: obs, health: client.Health, cache: blocks, mounted: &mounted, dl: dl}, logger)
		if err != nil {
			return err
		}
		life.metrics = stop
	}
	engine, err := upload.New(upload.Options{
		Client: client, Dir: filepath.Join(accountDir, "uploads"), UploadParallel: c.uploadParallel, Logger: logger,
		S3: remote.S3Options{HTTPClient: obs.storageClient(remote.Policy{})},
		OnDone: func(st upload.Status, f remote.File) {
			if m := mounted.Load(); m != nil {
				m.UploadDone(st, f)
			}
		},
	})
	if err != nil {
		return err
	}
	life.engine = engine
	opts := rfs.Options{
		Client: client, Cache: blocks, Poll: c.poll, MaxJobAge: time.Duration(c.maxJobAgeDays) * 24 * time.Hour,
		Logger: logger, CacheDir: accountDir, MountOptions: c.options, Debug: c.debugFUSE, Uploads: engine,
		UploadSettle: c.uploadSettle,
	}
	if direct != nil {
		opts.FileSeen = direct.Register
	}
	opts.StatusExtra = func() any { return statusExtra(obs, creds.URL, dl) }
	m, err := rfs.Mount(mountpoint, opts)
	if err != nil {
		return fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	mounted.Store(m)
	life.mount = m
	engine.Start(life.ctx)
	if n := toResume(engine); n > 0 {
		logger.Info("resuming uploads", "pending", n)
	}
	if addr := os.Getenv(pprofEnv); addr != "" {
		life.pprof = servePprof(addr, logger)
	}
	logger.Info("mounted", "mountpoint", mountpoint, "url", creds.URL)
	ready(nil)

	ended := ctx.Done()           // the caller's end (the demo's stdout closed) unmounts as a signal does
	served := make(chan struct{}) // closed when the mount is gone: the watcher below ends with it
	go func() {
		for {
			select {
			case sig := <-sigs:
				logger.Info("unmounting", "signal", sig.String())
			case <-ended:
				ended = nil
				logger.Info("unmounting", "reason", context.Cause(ctx).Error())
			case <-served:
				return
			}
			if err := m.Unmount(); err != nil {
				// Busy (a shell sits in the folder): detach now, the kernel finishes when it is let go.
				logger.Warn("unmount failed; detaching lazily", "err", err)
				_ = syscall.Unmount(mountpoint, syscall.MNT_DETACH)
			}
			// Reads still in flight (a program held a file open) fail now instead of waiting out
			// the network policy's budget on a platform that does not answer.
			life.stop()
		}
	}()
	m.Wait()
	close(served)
	life.end()
	if n := toResume(engine); n > 0 {
		logger.Warn("uploads pending at unmount", "pending", n)
		fmt.Fprintf(logw, "rescalefs: %d uploads pending; they resume on the next mount\n", n)
	}
	logger.Info("unmounted", "mountpoint", mountpoint)
	return nil
}

// startAutoDownload starts the Transfer Manager's background download: the outputs of every job that
// completes (and, at start, of those completed within --max-job-age) are copied into DIR/<jobId>/.
func startAutoDownload(ctx context.Context, c mountConfig, client *remote.Client, blocks *cache.Cache, seen func(...remote.File), logger *slog.Logger) (*download.Downloader, error) {
	dl, err := download.New(download.Options{Client: client, Cache: blocks, Dir: c.autoDownload, Query: c.autoQuery,
		MaxJobAge: time.Duration(c.maxJobAgeDays) * 24 * time.Hour, Poll: c.poll, Logger: logger, FileSeen: seen})
	if err != nil {
		return nil, fmt.Errorf("--auto-download: %w", err)
	}
	if err := dl.Start(ctx); err != nil {
		return nil, fmt.Errorf("--auto-download: %w", err)
	}
	return dl, nil
}

// checkAutoDownload refuses flag combinations that cannot work: a query with nothing to download, and a
// download folder inside the mount (it would copy the platform into itself).
func checkAutoDownload(c mountConfig, mountpoint string) error {
	if c.autoDownload == "" {
		if c.autoQuery != "" {
			return errors.New("--auto-query needs --auto-download DIR")
		}
		return nil
	}
	dir, err := filepath.Abs(c.autoDownload)
	if err != nil {
		return err
	}
	if rel, err := filepath.Rel(mountpoint, dir); err == nil && (rel == "." || filepath.IsLocal(rel)) {
		return fmt.Errorf("--auto-download %s is inside the mountpoint %s", dir, mountpoint)
	}
	return nil
}

// requestSize is the size of one read-ahead request. The platform limits requests (25/s for file access),
// not bytes, so requests must be large: at 16 MiB, 25 requests/s carry 400 MiB/s.
const (
	// contentsRequestSize is the read-ahead request through /contents/: platforms limit requests
	// per second, not bytes, so one stream's request rate is about throughput/16 MiB (25/s at 400 MiB/s).
	contentsRequestSize = 16 << 20
	contentsParallel    = 16
	// storageInFlight is the storage reads' share of --memory in flight: 32 requests of one 8 MiB
	// block, the same as 16 of 16 MiB through /contents/.
	storageInFlight = 256 << 20
	// storageSplitMisses: a block a read waits for comes as up to 4 requests of 2 MiB over idle
	// connections, in about a third of the time of one (20 ms latency + 80 ms vs 340 ms at 25 MiB/s).
	storageSplitMisses = 4
)

// The direct source hands the disk tier each block's checksum, computed as the bytes were decrypted.
var _ cache.ChecksumSource = (*remote.DirectSource)(nil)

// It says which files may have a waited-for block split over several requests: not those it reads
// through /contents/, where each request counts against the platform's limit.
var _ cache.SplitSource = (*remote.DirectSource)(nil)

// runtimeOverhead is what the process needs beyond block buffers: the Go runtime, FUSE request buffers,
// listings and metadata. It is the "small constant" of the memory target (--memory + 64 MiB of peak RSS
// with four 1 GiB readers): the Go memory limit is --memory plus this, and block buffers are noscan, so
// the garbage collector running often near the limit costs little.
const runtimeOverhead = 48 << 20

// pinnedReserve is the block data outside both the memory tier and the fetch budget: each open reader's
// last two blocks (the last is usually the one its whole-file hash works on; see cache's heldPair for
// the one before), and the blocks readers queue for the hash beyond that, at most the cache's 32 MiB of
// slack shared by all (blocks on their way to the disk tier keep their fetch's slot, so the fetch budget
// counts them). With four readers of 8 MiB blocks that is 64 + 32 MiB. Most are also in a tier, so this
// is a bound, not a typical use.
const pinnedReserve = 96 << 20

// minMemoryTier is the smallest useful memory tier: a few blocks for readers that re-read.
const minMemoryTier = 32 << 20

type memoryBudget struct{ tier, request int64 }

// splitMemory divides --memory between the block buffers of requests in flight and read-ahead not yet
// consumed (at most plan.parallel requests of plan.size) and the memory tier, so that all block data
// stays within --memory whatever the number of readers and file sizes.
func splitMemory(memory int64, plan requestPlan) (memoryBudget, error) {
	if plan.parallel < 1 {
		return memoryBudget{}, fmt.Errorf("--parallel %d: want at least 1", plan.parallel)
	}
	inflight := int64(plan.parallel) * plan.size
	if memory < inflight+pinnedReserve+minMemoryTier {
		return memoryBudget{}, fmt.Errorf("--memory %s is too small for %d requests of %s in flight (--parallel): want at least %s",
			units.Exact(memory), plan.parallel, units.Human(plan.size), units.Human(inflight+pinnedReserve+minMemoryTier))
	}
	return memoryBudget{tier: memory - inflight - pinnedReserve, request: plan.size}, nil
}

// stillWaitingAfter is how long the key check waits in silence: a URL that accepts connections but does
// not answer then gets a line saying what is being waited for, instead of the whole timeout of nothing.
var stillWaitingAfter = 3 * time.Second

// checkKey validates the key before anything is mounted, with one clear line per failure class. While
// the platform keeps it waiting it says so on progress, once. A platform that connects but does not
// answer within timeout (0 = authCheckTimeout) is errNoAnswer: an outage, which the caller may mount through.
func checkKey(ctx context.Context, client *remote.Client, apiURL string, timeout time.Duration, progress io.Writer) error {
	if timeout <= 0 {
		timeout = authCheckTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	slow := time.AfterFunc(stillWaitingAfter, func() {
		fmt.Fprintf(progress, "rescalefs: still waiting for %s to answer (going on without the key check after %s)...\n", apiURL, timeout)
	})
	err := client.CheckAuth(ctx)
	slow.Stop()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, remote.ErrUnauthorized), errors.Is(err, remote.ErrForbidden):
		return fmt.Errorf("the API key was rejected by %s: check RESCALE_API_KEY or your apiconfig profile", apiURL)
	case errors.Is(err, remote.ErrNotAPI):
		return fmt.Errorf("%s does not answer like a Rescale API (check the URL)", apiURL)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, remote.ErrUnavailable), errors.Is(err, remote.ErrStalled):
		// Connected, but no answer: an outage, not a wrong URL.
		return fmt.Errorf("%w: %s did not answer within %s", errNoAnswer, apiURL, timeout)
	default:
		// CheckAuth's errors start with the URL already; say it once.
		return fmt.Errorf("cannot reach %s: %s", apiURL, strings.TrimPrefix(err.Error(), apiURL+": "))
	}
}

// permanentError tells the cache which fetch errors retrying cannot fix: the network policy's.
func permanentError(err error) bool { return remote.Permanent(err) }

// lockAccountDir returns the cache folder of this platform and key (blocks are addressed by file id, so
// accounts must not share one) and holds a lock on it: two processes serving one disk cache would each
// evict what the other indexed.
func lockAccountDir(cacheDir string, creds credentials) (string, func(), error) {
	u, _ := url.Parse(creds.URL)
	sum := sha256.Sum256([]byte(creds.URL + "\x00" + creds.Key))
	dir := filepath.Join(cacheDir, u.Hostname()+"-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("cache directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("cache directory: %w", err)
	}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", nil, fmt.Errorf("cache directory: %w", err)
	}
	if err := syscall.Flock(int(lf.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lf.Close()
		return "", nil, fmt.Errorf("cache directory %s is in use by another rescalefs mount of this account; pass another --cache-dir", dir)
	}
	return dir, func() { lf.Close() }, nil
}

// startBackground re-runs this command in the foreground as a detached child and waits for it to say it
// is ready. The key travels in the child's environment, never its arguments (which any user can read).
func startBackground(fl *pflag.FlagSet, creds credentials, mountpoint, logFile string, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "rescalefs mount: %v\n", err)
		return exitFailure
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	logw, err := openLogFile(logFile)
	if err != nil {
		return fail(err)
	}
	defer logw.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return fail(err)
	}
	defer pr.Close()

	cmd := exec.Command(self, childArgs(fl, mountpoint)...)
	cmd.Env = append(os.Environ(), "RESCALE_API_KEY="+creds.Key, "RESCALE_API_URL="+creds.URL, readyFDEnv+"=3")
	cmd.Stdout, cmd.Stderr = logw, logw
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fail(err)
	}
	pw.Close()
	// The child's own still-waiting line goes to its log; the person at this terminal hears it here.
	slow := time.AfterFunc(stillWaitingAfter, func() {
		fmt.Fprintf(stderr, "rescalefs mount: still waiting for %s to answer (mounting without the key check after %s)...\n", creds.URL, authCheckTimeout)
	})
	line, _ := bufio.NewReader(pr).ReadString('\n')
	slow.Stop()
	line = strings.TrimSpace(line)
	switch {
	case line == "ready":
		fmt.Fprintf(stdout, "mounted %s (pid %d, log %s); unmount with: rescalefs unmount %s\n", mountpoint, cmd.Process.Pid, logFile, mountpoint)
		_ = cmd.Process.Release()
		return exitOK
	case line != "":
		_ = cmd.Wait()
		fmt.Fprintf(stderr, "rescalefs mount: %s\n", strings.TrimPrefix(line, "error: "))
		return exitFailure
	default:
		_ = cmd.Wait()
		return fail(fmt.Errorf("the mount process exited before it was ready (%v); see %s", cmd.ProcessState, logFile))
	}
}

// childArgs rebuilds the command line for the foreground child from the flags the user set, leaving out
// the credential flags (the child gets those through its environment).
func childArgs(fl *pflag.FlagSet, mountpoint string) []string {
	args := []string{"mount", "--foreground"}
	fl.Visit(func(f *pflag.Flag) {
		switch f.Name {
		case "api-key", "api-url", "profile", "config", "foreground", "help":
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name+"="+v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return append(args, "--", mountpoint)
}

// readyReporter returns the function a foreground process calls once: with nil when the mount is ready,
// or with the error that stopped it. With no parent waiting it does nothing.
func readyReporter() func(error) {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil {
		return func(error) {}
	}
	os.Unsetenv(readyFDEnv)
	f := os.NewFile(uintptr(fd), "ready")
	return func(err error) {
		if f == nil {
			return
		}
		if err == nil {
			fmt.Fprintln(f, "ready")
		} else {
			fmt.Fprintf(f, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		}
		f.Close()
		f = nil
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	l, err := parseLogLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(oneLineHandler{slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})}), nil
}

func parseLogLevel(level string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return l, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return l, nil
}

func openLogFile(path string) (*os.File, error) {
	if err := checkFallback(path); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

func xdgDir(env, fallback string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return tmpFallbackDir() // checked before use: checkFallback
	}
	return filepath.Join(home, fallback)
}

func defaultCacheDir() string { return filepath.Join(xdgDir("XDG_CACHE_HOME", ".cache"), "rescalefs") }
func defaultLogFile() string {
	return filepath.Join(xdgDir("XDG_STATE_HOME", ".local/state"), "rescalefs", "rescalefs.log")
}

func runUnmount(args []string, stdout, stderr io.Writer) int {
	fl := pflag.NewFlagSet("unmount", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs unmount MOUNTPOINT\n\nUnmounts a rescalefs mount (umount and fusermount3 -u work too).")
	}
	if code, done := parseFlags(fl, args, 1, "unmount", usage, stdout, stderr); done {
		return code
	}
	pid := mountPID(fl.Arg(0))
	if err := unmount(fl.Arg(0)); err != nil {
		fmt.Fprintf(stderr, "rescalefs unmount: %v\n", err)
		return exitFailure
	}
	waitMountProcess(fl.Arg(0), pid, stderr)
	return exitOK
}
