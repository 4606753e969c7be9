// Package emulator is an emulated Rescale platform: one http.Handler serving the REST API of
// shared/rescale-api.md, an S3-compatible endpoint over the same stored objects, job life cycles driven
// by an injectable clock, throttling, fault injection and per-endpoint counters. Tests start it with
// httptest; the `rescalefs emulator` and `rescalefs demo` commands serve it on loopback.
//
// Files are kept as the real platform keeps them: AES-256-CBC ciphertext objects, one key per file, the
// IV in the object's `iv` metadata, the plaintext sha512 in fileChecksums. /contents/ decrypts the
// requested range on the fly. With a DataDir everything (jobs, files, keys, objects, multipart uploads,
// storage credentials) survives a restart; with none it lives in memory.
//
// Every behaviour the public sources do not confirm is marked [I] at the constant that holds it.
package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rclone/gofakes3"
)

// ErrNotFound is returned by the seeding and test helpers for an unknown job or file id.
var ErrNotFound = errors.New("emulator: not found")

// Options configures an Emulator.
type Options struct {
	// RunJobs executes submitted jobs on this machine (executor.go) instead of simulating them.
	RunJobs bool
	// WorkDir holds the runs' work directories; "" = DataDir/work, or a temporary folder (removed by
	// Close) without a DataDir.
	WorkDir string
	// WalltimeUnit is how long an hour of walltime lasts; 0 = an hour (tests shorten it).
	WalltimeUnit time.Duration

	DataDir   string           // "" = in memory; else objects and state persist there and survive a restart
	APIKey    string           // "" = the key stored in DataDir, else a random one
	Logger    *slog.Logger     // nil = discard
	Now       func() time.Time // nil = time.Now: job life cycles, throttling, credential expiry
	Lifecycle Lifecycle        // zero = DefaultLifecycle(); for jobs submitted through the API
	Limits    map[string]int   // requests per hour per throttle scope (Scope*); nil = DefaultLimits; a scope missing or 0 = unlimited
	// NoLimits turns the throttle off whatever Limits says. The default is the platform as it is (its
	// published limits enforced), so tests and benchmarks opt out explicitly, and only where they must.
	NoLimits bool
	Faults   Faults // initial fault injection (SetFaults changes it at run time)
}

// IdleTimeout is the keep-alive idle timeout servers of the emulator should use: object stores drop
// idle connections after about 20 s.
const IdleTimeout = 20 * time.Second

// Emulator is the emulated platform. It is an http.Handler; all methods are safe for concurrent use.
type Emulator struct {
	log       *slog.Logger
	clock     func() time.Time
	lifecycle Lifecycle
	blobs     blobStore
	s3        *gofakes3.GoFakeS3
	s3h       http.Handler
	counters  counters
	faults    faultInjector
	throttle  *throttler
	revoked   atomic.Bool // SetKeyRevoked: every API request answers 401
	exec      *executor   // nil: submitted jobs follow the simulated life cycle
	tempWork  string      // a WorkDir New made, removed by Close

	serving atomic.Int64 // API and S3 requests whose handling has not returned (Serving)

	uploadNames uploadNames // test knobs on uploaded names: RejectUploadName, StoreUploadNameAs (uploads.go)

	mu      sync.RWMutex // guards st and journal (and so every record reachable from st)
	st      *state
	journal *journal
}

// New builds an emulator; with a DataDir it reloads what a previous emulator stored there.
func New(opts Options) (*Emulator, error) {
	e := &Emulator{
		log:       opts.Logger,
		clock:     opts.Now,
		lifecycle: opts.Lifecycle.orDefault(),
		st:        newState(),
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.clock == nil {
		e.clock = time.Now
	}
	limits := opts.Limits
	if opts.NoLimits {
		limits = map[string]int{}
	}
	e.throttle = newThrottler(limits)
	e.faults.set(opts.Faults)
	if opts.DataDir == "" {
		e.blobs = newMemBlobs()
	} else {
		if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("emulator data dir: %w", err)
		}
		blobs, err := newDiskBlobs(opts.DataDir)
		if err != nil {
			return nil, fmt.Errorf("emulator data dir: %w", err)
		}
		e.blobs = blobs
		if e.journal, err = loadJournal(opts.DataDir, e.st); err != nil {
			return nil, fmt.Errorf("emulator data dir: %w", err)
		}
	}
	meta := e.st.meta
	if opts.APIKey != "" {
		meta.APIKey = opts.APIKey
	}
	if meta.APIKey == "" {
		meta.APIKey = randomHex(20)
	}
	if meta.UserID == "" {
		meta.UserID = "user_" + randomID(5)
	}
	e.mu.Lock()
	err := e.commitLocked(record{Meta: &meta})
	e.mu.Unlock()
	if err != nil {
		e.journal.close()
		return nil, err
	}
	if err := e.initS3(); err != nil {
		e.journal.close()
		return nil, err
	}
	if opts.RunJobs {
		if err := e.initExecutor(opts); err != nil {
			e.journal.close()
			return nil, err
		}
	}
	return e, nil
}

// StartExecutor turns RunJobs on for an emulator made without it, before it serves: jobs submitted from
// then on run on this machine.
func (e *Emulator) StartExecutor(workDir string, walltimeUnit time.Duration) error {
	if e.exec != nil {
		return errors.New("emulator: the executor runs already")
	}
	return e.initExecutor(Options{WorkDir: workDir, WalltimeUnit: walltimeUnit})
}

func (e *Emulator) initExecutor(opts Options) error {
	dir := opts.WorkDir
	if dir == "" && opts.DataDir != "" {
		dir = filepath.Join(opts.DataDir, "work")
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "rescalefs-emulator-work-")
		if err != nil {
			return fmt.Errorf("emulator work dir: %w", err)
		}
		dir, e.tempWork = d, d
	}
	x, err := newExecutor(e, dir, opts.WalltimeUnit)
	if err != nil {
		return err
	}
	e.mu.Lock()
	err = e.abandonExecutionsLocked()
	e.mu.Unlock()
	e.exec = x
	return err
}

// APIKey returns the key the emulator accepts.
func (e *Emulator) APIKey() string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.st.meta.APIKey
}

// SetKeyRevoked makes every API request with the (otherwise valid) key answer 401, until called with
// false: a key revoked mid-mount, then valid again.
func (e *Emulator) SetKeyRevoked(revoked bool) { e.revoked.Store(revoked) }

// Close releases the data directory. The handler must not be used afterwards.
func (e *Emulator) Close() error {
	if e.exec != nil {
		e.exec.close() // kills running commands and waits: they write to the state below
	}
	if e.tempWork != "" {
		defer os.RemoveAll(e.tempWork)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.journal.close()
	e.journal = nil
	return err
}

func (e *Emulator) now() time.Time { return e.clock() }

// commitLocked journals recs and applies them to the state. e.mu must be held for writing.
func (e *Emulator) commitLocked(recs ...record) error {
	if err := e.journal.append(recs...); err != nil {
		return fmt.Errorf("emulator journal: %w", err)
	}
	for _, r := range recs {
		e.st.apply(r)
	}
	return nil
}

// commitOrFailLocked commits recs for a handler, or answers 500 with the journal's error; it reports
// whether the handler may go on. e.mu must be held.
func (e *Emulator) commitOrFailLocked(w http.ResponseWriter, recs ...record) bool {
	if err := e.commitLocked(recs...); err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return false
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// randomID returns n random letters and digits: the shape of Rescale's job and file ids.
func randomID(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return string(b)
}

// newIDLocked returns a fresh id of n characters not used by any job or file.
func (e *Emulator) newIDLocked(n int) string {
	for {
		id := randomID(n)
		if _, ok := e.st.jobs[id]; ok {
			continue
		}
		if _, ok := e.st.files[id]; ok {
			continue
		}
		return id
	}
}

// discardCloser is a no-op ReadCloser for HEAD answers.
type discardCloser struct{}

func (discardCloser) Read([]byte) (int, error) { return 0, io.EOF }
func (discardCloser) Close() error             { return nil }
