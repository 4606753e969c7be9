package fusetest

import (
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// PlatformOptions describe a Platform. Zero values are test-friendly defaults.
type PlatformOptions struct {
	DataDir string         // the emulator's data folder, kept across Restart; "" = t.TempDir()
	Limits  map[string]int // the emulator's throttle, requests per hour per scope; nil = the platform's published limits
	// NoLimits turns the emulator's throttle off (whatever Limits says).
	NoLimits bool
	Faults   emulator.Faults
	Now      func() time.Time // the emulator's clock; nil = time.Now
	// Lifecycle is the emulator's job life cycle (zero: its default). MountOn ignores Options.Lifecycle:
	// the platform's emulator is made here.
	Lifecycle emulator.Lifecycle
	// Wrap, if set, puts a handler in front of the emulator (latency spikes, request windows). It gets
	// the current emulator on every start, so it must not keep an older one.
	Wrap func(*emulator.Emulator) http.Handler
}

// Platform is an emulator served on a loopback address the test owns, with a data folder: Restart stops
// it (connections cut, the port refusing) and starts a new emulator on the same folder and address, as
// a platform restart looks to a client. Stopped in t.Cleanup.
type Platform struct {
	t    testing.TB
	opts PlatformOptions

	mu   sync.Mutex // guards emu, srv, addr
	emu  *emulator.Emulator
	srv  *httptest.Server
	addr string
}

// NewPlatform starts a Platform.
func NewPlatform(t testing.TB, o PlatformOptions) *Platform {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	p := &Platform{t: t, opts: o}
	p.Start()
	t.Cleanup(p.Stop)
	return p
}

// Start starts the emulator on the data folder, on the address of the previous start if any.
func (p *Platform) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil {
		return
	}
	emu, err := emulator.New(emulator.Options{DataDir: p.opts.DataDir, Limits: p.opts.Limits, NoLimits: p.opts.NoLimits, Faults: p.opts.Faults,
		Now: p.opts.Now, Lifecycle: p.opts.Lifecycle})
	if err != nil {
		p.t.Fatalf("emulator: %v", err)
	}
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		emu.Close()
		p.t.Fatalf("listen %s: %v", addr, err)
	}
	var h http.Handler = emu
	if p.opts.Wrap != nil {
		h = p.opts.Wrap(emu)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.IdleTimeout = emulator.IdleTimeout
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	p.emu, p.srv, p.addr = emu, srv, l.Addr().String()
}

// Stop cuts every connection, closes the port and the emulator. Safe to call when stopped.
func (p *Platform) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv == nil {
		return
	}
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.emu.Close()
	p.srv = nil
}

// Restart is Stop then Start: same data folder, same address, a new emulator (fresh counters).
func (p *Platform) Restart() {
	p.t.Helper()
	p.Stop()
	p.Start()
}

// Emulator is the emulator serving now (a new one after each Restart).
func (p *Platform) Emulator() *emulator.Emulator {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.emu
}

// URL is the platform's base URL; it does not change across restarts.
func (p *Platform) URL() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "http://" + p.addr
}

// MountExtra are the knobs of MountOn that Options does not have.
type MountExtra struct {
	// Client is the template of the platform client: BaseURL and APIKey are filled in; a zero Logger,
	// MinBackoff, MaxBackoff or MaxRetryAfter takes Mount's test value; nil Limits = unlimited.
	Client remote.Options
	// DiskDir is the disk tier's folder; "" = t.TempDir() (none with Options.NoDisk).
	DiskDir string
	// Permanent tells the cache which errors not to retry (the binary's choice); nil = retry all.
	Permanent func(error) bool
	// CacheDir is the mount's staging disk for statfs; "" = t.TempDir().
	CacheDir string
}

// MountOn is Mount against a Platform the test controls (restarts, throttle limits, wrappers) with the
// client and cache knobs of extra. Env.Emulator and Env.Server are those serving at mount time; after a
// Restart use Platform.Emulator.
func MountOn(t testing.TB, p *Platform, o Options, extra MountExtra) *Env {
	t.Helper()
	logger := prepare(t, &o)
	emu := p.Emulator()
	p.mu.Lock()
	env := &Env{Emulator: emu, Server: p.srv}
	p.mu.Unlock()
	return mountOn(t, env, p.URL(), o, extra, logger)
}

// LogBuffer keeps what a logger wrote (testutil.LogBuffer).
type LogBuffer = testutil.LogBuffer

// CaptureLog returns a logger at level that writes to a LogBuffer (and the test log).
func CaptureLog(t testing.TB, level slog.Level) (*slog.Logger, *LogBuffer) {
	return testutil.CaptureLog(t, level)
}
