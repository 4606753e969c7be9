// Package fusetest mounts rescalefs over an emulated platform for tests: the emulator behind httptest,
// a remote.Client, a block cache in t.TempDir(), and the mount in t.TempDir(), unmounted in t.Cleanup
// even when the test fails. Import it from _test.go files only.
package fusetest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/remote/remotetest"
	"github.com/rescalefs/rescalefs/upload"
)

// LibraryFile is a file of the user's library to seed.
type LibraryFile struct {
	Name    string
	Content []byte
}

// Options describe the platform and the mount. Zero values are test-friendly defaults.
type Options struct {
	Jobs    []emulator.JobSpec
	Library []LibraryFile
	RunJobs bool            // submitted jobs run on this machine (the emulator's executor)
	Faults  emulator.Faults // injected from the start (SetFaults changes them later)
	// Lifecycle is the emulator's job life cycle (zero: its default); running jobs (JobSpec.RunFor)
	// fit it to their run time.
	Lifecycle emulator.Lifecycle
	// NoLimits turns the emulator's throttle off; by default it enforces the platform's published
	// limits, as the platform does. Only a test that must exceed them on purpose sets it.
	NoLimits bool

	Poll      time.Duration // default 100ms, so tests see changes quickly
	MaxJobAge time.Duration
	BlockSize int64 // default 64 KiB: small files span many blocks
	Readahead int64 // default 256 KiB; negative disables read-ahead
	Parallel  int   // default 8
	NoDisk    bool  // no disk tier
	NoMemory  bool  // no memory tier: every re-read the page cache misses goes to disk or the platform
	// Direct makes the cache read straight from storage (remote.DirectSource, falling back to
	// /contents/ per file), as the binary does by default; Env.Direct is that source.
	Direct    bool
	WalkAhead fs.WalkAheadOptions // read-ahead across files; zero = the mount's defaults

	MountOptions []string
	Logger       *slog.Logger // default: errors to the test log

	// Uploads makes uploads/ writable through an upload engine (uploads.go in this package).
	Uploads UploadOptions

	MaxTreeFiles int // fs.Options.MaxTreeFiles
	// Clock is fs.Options.Clock: a testutil.Clock lets the test decide when the poller's next round
	// comes, and see (Clock.Waiters) that a round is done. nil = the real clock.
	Clock fs.Clock

	// Faulty puts a remotetest.Faulty (Env.Faulty) between the client and the mount and cache, so the
	// test can make any platform call fail, stall or be slow.
	Faulty bool
}

// Env is a mounted test platform.
type Env struct {
	Dir      string // the mountpoint
	Emulator *emulator.Emulator
	Server   *httptest.Server
	Client   *remote.Client
	Cache    *cache.Cache
	DiskDir  string // the disk tier's folder, "" with NoDisk
	Mount    *fs.Mounted
	Jobs     []emulator.Job // as AddJob returned them, in Options.Jobs order
	Library  []emulator.FileInfo
	Engine   *upload.Engine       // with Options.Uploads.Enabled
	Direct   *remote.DirectSource // with Options.Direct
	Faulty   *remotetest.Faulty   // with Options.Faulty

	pubMu      sync.Mutex // guards published
	published  []upload.Status
	setMounted func(*fs.Mounted)
}

// Mount starts the emulator, seeds it, and mounts. Everything is torn down in t.Cleanup, the mount
// first (with retries, then a lazy unmount, so a failed test never leaves a mount behind).
func Mount(t testing.TB, o Options) *Env {
	t.Helper()
	logger := prepare(t, &o)
	emu, err := emulator.New(emulator.Options{NoLimits: o.NoLimits, Faults: o.Faults, Lifecycle: o.Lifecycle})
	if err != nil {
		t.Fatalf("emulator: %v", err)
	}
	if o.RunJobs {
		if err := emu.StartExecutor(t.TempDir(), 0); err != nil {
			t.Fatalf("emulator: %v", err)
		}
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(func() {
		srv.Close()
		emu.Close()
	})
	return mountOn(t, &Env{Emulator: emu, Server: srv}, srv.URL, o, MountExtra{}, logger)
}

// prepare skips a test that cannot mount here and fills in the test defaults of o; it returns the
// logger to use.
func prepare(t testing.TB, o *Options) *slog.Logger {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mount tests need root")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	if o.Poll == 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.BlockSize == 0 {
		o.BlockSize = 64 << 10
	}
	if o.Readahead == 0 {
		o.Readahead = 256 << 10
	}
	if o.Parallel == 0 {
		o.Parallel = 8
	}
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// mountOn seeds env.Emulator, then builds the client (from extra.Client), the cache and the mount
// against the platform at url: what Mount and MountOn share.
func mountOn(t testing.TB, env *Env, url string, o Options, extra MountExtra, logger *slog.Logger) *Env {
	t.Helper()
	emu := env.Emulator
	for _, spec := range o.Jobs {
		j, err := emu.AddJob(spec)
		if err != nil {
			t.Fatalf("add job: %v", err)
		}
		env.Jobs = append(env.Jobs, j)
	}
	for _, l := range o.Library {
		fi, err := emu.AddLibraryFile(l.Name, bytes.NewReader(l.Content), int64(len(l.Content)))
		if err != nil {
			t.Fatalf("add library file: %v", err)
		}
		env.Library = append(env.Library, fi)
	}
	co := extra.Client
	co.BaseURL, co.APIKey = url, emu.APIKey()
	if co.Logger == nil {
		co.Logger = logger
	}
	if co.MinBackoff == 0 {
		co.MinBackoff = time.Millisecond
	}
	if co.MaxBackoff == 0 {
		co.MaxBackoff = 20 * time.Millisecond
	}
	if co.MaxRetryAfter == 0 {
		co.MaxRetryAfter = time.Second
	}
	if co.Limits == nil {
		// The client does not pace itself in tests (a test's few hundred requests would wait on the
		// user scope's burst); the emulator still enforces the platform's limits, so a test that made a
		// request too many would see the 429 the platform answers.
		co.Limits = map[remote.Scope]float64{}
	}
	var err error
	if env.Client, err = remote.New(co); err != nil {
		t.Fatalf("client: %v", err)
	}
	if !o.NoDisk {
		env.DiskDir = extra.DiskDir
		if env.DiskDir == "" {
			env.DiskDir = t.TempDir()
		}
	}
	memory := int64(0) // the cache's default
	if o.NoMemory {
		memory = -1
	}
	var src cache.Source = env.Client
	var platform fs.Platform = env.Client
	if o.Faulty {
		env.Faulty = remotetest.NewFaulty(env.Client)
		src, platform = env.Faulty, env.Faulty
	}
	if o.Direct {
		env.Direct = remote.NewDirectSource(env.Client, remote.DirectSourceOptions{
			S3: remote.S3Options{MaxAttempts: 2, MaxBackoff: 10 * time.Millisecond}, Logger: logger})
		src = env.Direct
		t.Cleanup(env.Direct.Close) // after the unmount and the cache's close (cleanups run last first)
	}
	env.Cache, err = cache.New(src, cache.Options{
		BlockSize: o.BlockSize, MemoryBytes: memory, DiskDir: env.DiskDir, Parallel: o.Parallel, Readahead: o.Readahead,
		MinRequestSize: o.BlockSize, MaxRequestSize: 4 * o.BlockSize,
		Retry:     cache.RetryPolicy{Attempts: 8, Initial: time.Millisecond, Max: 20 * time.Millisecond},
		Permanent: extra.Permanent, Logger: logger,
	})
	if err != nil {
		t.Fatalf("cache: %v", err)
	}
	t.Cleanup(func() { env.Cache.Close() })
	env.Dir = t.TempDir()
	if extra.CacheDir == "" {
		extra.CacheDir = t.TempDir()
	}
	fo := fs.Options{
		Client: platform, Cache: env.Cache, Poll: o.Poll, MaxJobAge: o.MaxJobAge, Logger: logger,
		CacheDir: extra.CacheDir, MountOptions: o.MountOptions, WalkAhead: o.WalkAhead, MaxTreeFiles: o.MaxTreeFiles,
		Clock: o.Clock,
	}
	if env.Direct != nil {
		fo.FileSeen = env.Direct.Register
	}
	if o.Uploads.Enabled {
		fo.Uploads, fo.UploadSettle, fo.UploadHold = env.newEngine(t, o.Uploads, logger), o.Uploads.Settle, o.Uploads.Hold
		if fo.UploadSettle == 0 {
			fo.UploadSettle = 50 * time.Millisecond
		}
	}
	env.Mount, err = fs.Mount(env.Dir, fo)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() { Unmount(t, env.Mount, env.Dir) })
	if env.Engine != nil {
		env.setMounted(env.Mount)
		env.Engine.Start(context.Background())
	}
	return env
}

// Unmount unmounts, retrying while the mount is busy (a program of the test still closing a file),
// and falls back to a lazy unmount so nothing is left mounted whatever happened.
func Unmount(t testing.TB, m *fs.Mounted, dir string) {
	t.Helper()
	var err error
	for i := 0; i < 10; i++ {
		if err = m.Unmount(); err == nil {
			return
		}
		time.Sleep(time.Duration(i+1) * 50 * time.Millisecond)
	}
	t.Errorf("unmount %s: %v; unmounting lazily", dir, err)
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Errorf("umount -l %s: %v: %s", dir, err, out)
	}
}

// Eventually polls cond until it holds or the deadline passes (never a fixed sleep).
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, within, what, cond)
}

// Plaintext returns a file's stored plaintext, what every read must return.
func (e *Env) Plaintext(t testing.TB, fileID string) []byte {
	t.Helper()
	rc, _, err := e.Emulator.Plaintext(fileID)
	if err != nil {
		t.Fatalf("plaintext %s: %v", fileID, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("plaintext %s: %v", fileID, err)
	}
	return b
}

// Requests is the emulator's request count for an endpoint (emulator.Endpoint*).
func (e *Env) Requests(endpoint string) int64 { return e.Emulator.Counters().Requests[endpoint] }

// Context is a context for test calls that ends with the test.
func Context(t testing.TB) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
