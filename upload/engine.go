// Package upload is the upload engine: files closed in uploads/ are published to the user's Rescale
// library, resumably, and nothing handed to it is lost to a crash, a kill -9, a network fault or a
// restart of the platform.
//
// A file is handed over with Enqueue: its data file is moved into the engine's pending/ folder and a
// journal record is fsynced first. Small files go up in one POST /api/v2/files/contents/; larger ones
// the way Rescale's own clients do it: an S3 multipart upload of the AES-256-CBC encrypted file (the
// chain carried across parts), then POST /api/v3/files/. Every finished part is journaled with its
// ETag and the CBC chain block after it, so a restart resumes at the first part S3 does not have.
//
// Folder layout under Options.Dir:
//
//	journal/   <id>.json (the record), <id>.parts (finished parts, append-only); a record whose
//	           upload is over but whose leftovers on the platform are still to be deleted stays,
//	           without data, until they are (a clean-up record: cleanup.go)
//	pending/   <id>: the data of each queued upload, owned by the engine (0600)
//	staging/   scratch files the fs layer writes before Enqueue (CreateStaging), each with a record
//	           <file>.json of its path in uploads/ and whether its writer closed it (staging.go)
//	damaged/   records and data that could not be trusted, kept with a .reason file
//
// # Lock order
//
//	upload.jmu -> Engine.mu
//
// jmu serialises the journal writes of one upload (record rewrite and part appends), so a record copy
// taken under Engine.mu is written in the order it was taken. Engine.mu guards the in-memory state
// and is never held across I/O to the network; s3mu is a leaf held while the S3 client is created.
// Nobody holds two uploads' jmu at once.
package upload

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// Defaults, measured against the emulator (see bench_test.go).
const (
	// DefaultPartSize is the multipart part size: Rescale's clients use 16 to 64 MiB parts; 16 MiB keeps
	// the memory of UploadParallel parts in flight small and a re-sent part cheap (8 MiB parts measured
	// no faster at 8 in flight: the CPU, not the requests' latency, bounds them then).
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part (except the last).
	MinPartSize = 5 << 20
	// MaxParts is S3's limit on parts per upload; the part size grows for files that would need more.
	MaxParts = 10000
	// DefaultSmallThreshold: files below it go in one POST. Below a few MiB the multipart path's fixed
	// cost (user, credentials, create, complete, register: five round trips) dominates.
	DefaultSmallThreshold = 8 << 20
	// DefaultUploadParallel parts in flight, all uploads together. The platform's storage limits
	// bandwidth per connection (25 MiB/s in the emulator's WAN profile), so parts in flight are the
	// throughput; 8 measured 1.2x faster than 4 on a 1 GiB file, where 16 gained nothing more (the
	// CPU of encryption and hashing bounds it). Being shared by all uploads, it bounds the ciphertext
	// held in memory to UploadParallel parts (plus one being prepared per running upload), whatever
	// the number of files.
	DefaultUploadParallel = 8
	// DefaultFiles uploads run at once; the others wait queued.
	DefaultFiles = 2
	// DefaultRetryMin and DefaultRetryMax bound the backoff between attempts of one upload.
	DefaultRetryMin = 2 * time.Second
	DefaultRetryMax = 5 * time.Minute
	// DefaultFailAfter failed attempts turn "retrying" into "failed" (which is still retried, at RetryMax).
	DefaultFailAfter = 5
	// keepDone is how long a finished upload stays in Snapshot.
	keepDone = 2 * time.Minute
)

// Errors of the Engine's API.
var (
	ErrUnknown    = errors.New("upload: no such pending upload")
	ErrClosed     = errors.New("upload: engine closed")
	ErrPublishing = errors.New("upload: being published, too late to rename")
	ErrDamaged    = errors.New("upload: data or journal damaged")
)

// Platform is what the Engine asks of the platform; *remote.Client satisfies it, and tests wrap it
// (remotetest.Faulty) to make any call fail, stall or be slow.
type Platform interface {
	Me(ctx context.Context) (remote.User, error)
	NewS3Client(ctx context.Context, o remote.S3Options) (*remote.S3Client, error)
	RegisterFile(ctx context.Context, reg remote.FileRegistration) (remote.File, error)
	UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error)
	LibraryFiles(ctx context.Context, search string) ([]remote.File, error)
	DeleteFile(ctx context.Context, fileID string) error
}

var _ Platform = (*remote.Client)(nil)

// Options configure an Engine.
type Options struct {
	Client Platform
	Dir    string // journal, pending data, staging and damaged folders are made under it (0700)

	PartSize       int64 // 0 = DefaultPartSize; at least MinPartSize, rounded up to 16 bytes
	SmallThreshold int64 // 0 = DefaultSmallThreshold; < 0 = every file goes multipart
	UploadParallel int   // parts in flight, all uploads together; 0 = DefaultUploadParallel
	Files          int   // 0 = DefaultFiles

	S3 remote.S3Options // template of the storage client (HTTP client, attempts); region and endpoint come from the storage

	RetryMin  time.Duration // 0 = DefaultRetryMin
	RetryMax  time.Duration // 0 = DefaultRetryMax
	FailAfter int           // 0 = DefaultFailAfter

	Logger *slog.Logger     // nil = discard
	Now    func() time.Time // nil = time.Now

	// OnDone is called (outside the engine's locks, from its goroutine) when the platform confirmed an
	// upload: the fs layer refreshes files/ and drops the name from uploads/. The Status's Name is the
	// name the publishing request carried; the remote.File's is the one the platform stored.
	OnDone func(Status, remote.File)

	// beforePart, when set (tests), runs before each part is sent; an error fails the part.
	beforePart func(ctx context.Context, id string, part int32) error
	// partWaits, when set (tests), is told of a part ready to be sent that waits for a token
	// (UploadParallel parts of any uploads are in flight).
	partWaits func(id string, part int32)
	// stopped, when set (tests), is told that a cancel has stopped upload id's running attempt (it
	// may still be finishing).
	stopped func(id string)
	// beforeWithdraw, when set (tests), runs before the background part of a cancel (CancelNoWait):
	// the moment a crash would cut it off.
	beforeWithdraw func(id string)
	// beforeDiscard, when set (tests), runs in CancelVersion between the journal write of the
	// withdrawal and the discarding of the new version's staging file.
	beforeDiscard func(id string)
}

// Engine uploads enqueued files. Its methods are safe for concurrent use.
type Engine struct {
	o       Options
	c       Platform
	log     *slog.Logger
	now     func() time.Time
	j       journal
	pending string
	staging string
	damaged string

	wake chan struct{} // a nudge for the scheduler; capacity 1
	// parts holds a token for each part being sent (capacity UploadParallel), taken before a part's
	// ciphertext is handed to its request and given back when the request ends.
	parts chan struct{}

	mu       sync.Mutex // guards the fields below and each upload's fields marked "e.mu"
	ups      map[string]*upload
	broken   []Status // damaged records, reported in Snapshot
	staged   []Staged // staging files found by New, until TakeStaged
	finished []Status // recently done
	running  int
	// gone are the clean-up records (cleanup.go): uploads over, whose leftovers on the platform are
	// still to be deleted; by id.
	gone map[string]*upload
	// versions maps an upload to the pending one queued as its new version (EnqueueVersion's
	// replaces): a hint, checked against that upload's record when used (version.go).
	versions map[string]string
	// kept are the files left in the library that may be publications of uploads removed or renamed
	// since, or another tool's (kept.go).
	kept []Kept
	// rejected is told of each upload the platform refused for good (SetOnRejected); nil = nobody.
	rejected func(Status)
	ctx      context.Context // set by Start
	cancel   context.CancelFunc
	closed   bool
	wg       sync.WaitGroup // scheduler and workers
	bg       sync.WaitGroup // cancels finishing in the background (CancelNoWait); Add under mu
	// withdrawing counts the cancels finishing in the background, and withdrawn is closed when the
	// count drops to zero (nil while none runs): CancelsDone.
	withdrawing int
	withdrawn   chan struct{}

	// stagingMu serialises the read-modify-writes of staging records (RecordStaging, handOver,
	// EnqueueVersion's take-over of what handOver booked) and guards replacing; taken before e.mu
	// and u.jmu.
	stagingMu sync.Mutex
	// replacing maps a staging file to the upload its record says it replaces, and replacedBy the
	// other way (version.go): hints, checked against the record when used, so that a publication
	// neither reads nor looks through every staging record.
	replacing  map[string]string
	replacedBy map[string]string

	s3mu    sync.Mutex // guards s3 and storage; a leaf
	s3      *remote.S3Client
	storage remote.Storage
}

// upload is one pending upload in memory.
type upload struct {
	id  string
	jmu sync.Mutex // serialises this upload's journal writes; taken before e.mu

	// e.mu
	rec        record
	running    bool
	publishing bool   // the name is on its way to the platform
	sent       string // the name the last publishing request carried (or an earlier one was found under)
	cancelled  bool
	// withdrawn: out of ups, its record its clean-up's (update journals nothing more)
	withdrawn bool
	// landed is the file a cancelled attempt's publishing request published all the same (its answer
	// came in after the cancel): the clean-up deletes it.
	landed string
	// unsure is the file the running attempt took for the publication of an earlier request whose
	// answer was lost without it being certainly ours (lookEarlier): never deleted by the engine.
	unsure string
	// cleaning: a clean-up goroutine runs for it
	cleaning bool
	stop     context.CancelFunc // cancels the running attempt
	done     chan struct{}      // closed when the running attempt returns
	// verified: size and sha512 checked against the data in this engine's life (or computed by its
	// writer as it wrote it: EnqueueHashed)
	verified bool
	meter    meter
	rate     float64

	confirmed atomic.Int64 // plaintext bytes in parts S3 has acknowledged (or the whole file)
	inflight  sync.Map     // *partBody -> struct{}: bodies being sent, for progress
}

// New opens (or creates) the engine's folders and loads the journal: unfinished uploads are queued
// again, damaged records are moved aside and reported. Nothing is sent before Start.
func New(o Options) (*Engine, error) {
	if o.Client == nil {
		return nil, errors.New("upload: no client")
	}
	if o.Dir == "" {
		return nil, errors.New("upload: no folder")
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.PartSize < MinPartSize {
		return nil, fmt.Errorf("upload: part size %d below S3's minimum %d", o.PartSize, MinPartSize)
	}
	o.PartSize = (o.PartSize + 15) / 16 * 16 // non-final parts must be whole CBC blocks
	if o.SmallThreshold == 0 {
		o.SmallThreshold = DefaultSmallThreshold
	}
	if o.UploadParallel <= 0 {
		o.UploadParallel = DefaultUploadParallel
	}
	if o.Files <= 0 {
		o.Files = DefaultFiles
	}
	if o.RetryMin <= 0 {
		o.RetryMin = DefaultRetryMin
	}
	if o.RetryMax <= 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.FailAfter <= 0 {
		o.FailAfter = DefaultFailAfter
	}
	e := &Engine{o: o, c: o.Client, log: o.Logger, now: o.Now, wake: make(chan struct{}, 1), ups: map[string]*upload{}, gone: map[string]*upload{},
		parts: make(chan struct{}, o.UploadParallel), replacing: map[string]string{},
		replacedBy: map[string]string{}, versions: map[string]string{}}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if e.now == nil {
		e.now = time.Now
	}
	e.j.dir = filepath.Join(o.Dir, "journal")
	e.pending = filepath.Join(o.Dir, "pending")
	e.staging = filepath.Join(o.Dir, "staging")
	e.damaged = filepath.Join(o.Dir, "damaged")
	for _, d := range []string{o.Dir, e.j.dir, e.pending, e.staging, e.damaged} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("upload: %w", err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("upload: %w", err)
		}
	}
	e.indexStaging() // before load, which hands publications over to new versions in staging
	if err := e.load(); err != nil {
		return nil, err
	}
	if err := e.loadStaging(); err != nil {
		return nil, err
	}
	if err := e.finishTakeBacks(); err != nil {
		return nil, err
	}
	return e, nil
}

// StagingDir is where the fs layer writes files before Enqueue: on the same filesystem as pending/, so
// Enqueue's move is a rename.
func (e *Engine) StagingDir() string { return e.staging }

// CreateStaging creates a new empty staging file (0600) for the fs layer to write.
func (e *Engine) CreateStaging() (*os.File, error) {
	return os.CreateTemp(e.staging, "w-*")
}

// SetOnRejected sets the function told (outside the engine's locks, from its goroutine) of each upload
// the platform refused for good (StateRejected): the fs layer marks the file failed-permanently. It is
// a method rather than an Option because the fs layer that listens is made after the engine; set it
// before Start (rejections found in the journal by New are in Snapshot, not told).
func (e *Engine) SetOnRejected(fn func(Status)) {
	e.mu.Lock()
	e.rejected = fn
	e.mu.Unlock()
}

// Start runs the scheduler until ctx ends or Close.
func (e *Engine) Start(ctx context.Context) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx != nil || e.closed {
		return
	}
	e.ctx, e.cancel = context.WithCancel(ctx)
	e.wg.Add(1)
	go e.schedule(e.ctx)
	for _, u := range e.gone { // clean-ups the journal holds from an earlier life
		u.cleaning = true
		e.wg.Add(1)
		go e.cleanup(e.ctx, u, nil, false)
	}
}

// engineCtx is Start's context, cancelled by Close only: for a request that a cancel of its upload
// must not cut short.
func (e *Engine) engineCtx() context.Context {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ctx
}

// Close stops every transfer and waits for them. Unfinished uploads stay in the journal and resume on
// the next start.
func (e *Engine) Close() error {
	e.mu.Lock()
	e.closed = true
	cancel := e.cancel
	e.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	e.wg.Wait()
	e.bg.Wait()
	return nil
}

// Pending is the number of uploads not yet confirmed (damaged ones not counted).
func (e *Engine) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, u := range e.ups {
		if !u.cancelled && u.rec.State != StateDone { // done: OnDone is being told (finish)
			n++
		}
	}
	return n
}

// Enqueue hands the file at stagingPath (which must be in StagingDir or on its filesystem) to the
// engine, to be published as name. The file is moved into pending/ and must not be written afterwards.
// When Enqueue returns, the upload is journaled durably; the staging record (RecordStaging), if any,
// is removed.
func (e *Engine) Enqueue(stagingPath, name string) (string, error) {
	return e.EnqueueHashed(stagingPath, name, 0, "")
}

// EnqueueHashed is Enqueue of a file whose sha512 its writer computed as it wrote it (hex; "" when
// unknown): it is journaled with the file, so the first attempt starts sending at once instead of
// reading the whole file to hash it first. size is the length the sum covers; a file of another
// length is hashed by the engine as any other. After a restart the sum is checked against the data
// before anything more is sent, as a sum of the engine's own is.
func (e *Engine) EnqueueHashed(stagingPath, name string, size int64, sum string) (string, error) {
	return e.EnqueueVersion(stagingPath, name, size, sum, "")
}

// EnqueueVersion is EnqueueHashed of a new version of a file of uploads/ whose old version is
// upload replaces ("" none), still pending: the caller cancels it once this returns (after Handover).
// The new record names it, so that a crash before that cancel does not leave both versions queued
// (the next start would publish the old one too, a version the user replaced): load withdraws it,
// its stale publications handed to the new version first.
func (e *Engine) EnqueueVersion(stagingPath, name string, size int64, sum, replaces string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", fmt.Errorf("upload: bad name %q", name)
	}
	fi, err := os.Stat(stagingPath)
	if err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("upload: %s is not a regular file", stagingPath)
	}
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return "", ErrClosed
	}
	id := newID()
	r := record{ID: id, Name: name, Source: stagingPath, Data: filepath.Join(e.pending, id), Size: fi.Size(),
		State: StateQueued, Created: e.now(), Replaces: replaces}
	hashed := sum != "" && size == fi.Size()
	if hashed {
		r.SHA512, r.SumFromWriter = sum, true
	}
	// The publications of older versions booked in the staging record (handOver) go with the upload:
	// held from here until the staging record is gone, so that none is booked in between and lost.
	e.stagingMu.Lock()
	defer e.stagingMu.Unlock()
	if sr, err := readStagingRecord(stagingPath + stagingExt); err == nil {
		r.Supersedes = slices.Clone(sr.Supersedes)
		addObjects(&r, sr.Dropped)
	}
	// The record first: a crash before the move leaves a record whose Source still holds the data
	// (load finishes the move); the other order could leave data that nothing points to.
	if err := e.j.save(&r); err != nil {
		return "", err
	}
	if err := os.Rename(stagingPath, r.Data); err != nil {
		_ = e.j.remove(id)
		return "", fmt.Errorf("upload: move into pending: %w", err)
	}
	if err := syncDir(e.pending); err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	// The journal owns the data now; a record left by a crash here is removed by the next New.
	_ = removeIfExists(stagingPath + stagingExt)
	e.indexLocked(stagingPath, "")
	_ = syncDir(filepath.Dir(stagingPath))
	u := &upload{id: id, rec: r, verified: hashed}
	e.mu.Lock()
	e.ups[id] = u
	if replaces != "" {
		e.versions[replaces] = id
	}
	e.mu.Unlock()
	e.nudge()
	return id, nil
}

// Cancel stops an upload, aborts its multipart upload and removes its data and journal.
func (e *Engine) Cancel(id string) error {
	u, _, err := e.markCancelled(id, false)
	if err != nil {
		return err
	}
	return errors.Join(e.journalWithdrawn(u, ""), e.withdraw(u))
}

// CancelNoWait withdraws an upload at once: it is no longer pending (Pending, Snapshot, Status, Rename
// forget it) and no new attempt starts; stopping the running attempt, the abort of its multipart
// upload and the removal of its data run in the background (Close waits for them). For callers that
// must not wait on the network: an unlink in uploads/.
func (e *Engine) CancelNoWait(id string) error {
	return e.cancelNoWait(id, "")
}

// CancelVersion is the removal of a file of uploads/ being rewritten: upload id is its old version,
// still queued, and stagingPath the staging file of its new one, not queued yet (its record Replaces
// id). It withdraws id as CancelNoWait does and discards the staging file, as one step that a crash
// cannot split: the withdrawal is journaled first, naming the staging file, which is discarded next.
// A crash in between leaves a withdrawn record that the next start (load) finishes the removal from,
// discarding the staging file; either order without that would leave one version of a removed file
// to be published on the next start (the old one queued, or the new one closed and queued by the fs
// layer). ErrUnknown (nothing discarded) when id is not pending: the caller discards the staging file.
func (e *Engine) CancelVersion(id, stagingPath string) error {
	if filepath.Dir(stagingPath) != e.staging {
		return fmt.Errorf("upload: %s is not a staging file", stagingPath)
	}
	return e.cancelNoWait(id, stagingPath)
}

// cancelNoWait is CancelNoWait, and CancelVersion with the staging file of the new version.
func (e *Engine) cancelNoWait(id, staging string) error {
	u, background, err := e.markCancelled(id, true)
	if err != nil {
		return err
	}
	jerr := e.journalWithdrawn(u, staging)
	if staging != "" {
		if e.o.beforeDiscard != nil {
			e.o.beforeDiscard(id)
		}
		// Even when the journal write failed: the user removed the file.
		jerr = errors.Join(jerr, e.DiscardStaging(staging))
	}
	if !background { // Close may be waiting already: nothing may be added to bg
		return errors.Join(jerr, e.withdraw(u))
	}
	go func() {
		defer e.bg.Done()
		defer e.withdrawDone()
		if e.o.beforeWithdraw != nil {
			e.o.beforeWithdraw(id)
		}
		if err := e.withdraw(u); err != nil {
			e.log.Warn("upload: cancel", "upload", id, "err", err)
		}
	}()
	return jerr
}

// journalWithdrawn makes a cancel durable before it returns: u's record, marked Withdrawn, is
// fsynced, so that a crash before withdraw has journaled the outcome (it waits up to cancelWait for
// the running attempt first) does not queue u again on the next start, which would publish a file
// the user removed. load takes the record for a clean-up record: what u may have put on the platform
// (a publishing request's lost answer, a publication whose confirmation the fs layer had not taken
// yet, a multipart upload) is deleted or aborted there, as withdraw would have. The record stays
// marked in memory, so that every later write of it (the attempt's, withdraw's) keeps the mark. It
// costs one journal write (two fsyncs) per cancel, which an unlink in uploads/ waits for.
//
// staging, when not "", is the staging file of u's new version, removed with it (CancelVersion):
// journaled in the same write, for load to discard after a crash.
func (e *Engine) journalWithdrawn(u *upload, staging string) error {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	if u.withdrawn { // withdraw has journaled (or removed) the record already
		e.mu.Unlock()
		return nil
	}
	r := &u.rec
	r.Withdrawn = true
	if staging != "" {
		r.Discards = staging
	}
	// Published, its confirmation not taken by the fs layer yet (finish): the publication is the
	// withdrawal's to delete, unless it may be another tool's (landLocked).
	if r.State == StateDone && r.Published != "" && r.Published != u.unsure && !slices.Contains(r.Supersedes, r.Published) {
		r.Supersedes = append(r.Supersedes, r.Published)
	}
	rc := *r
	e.mu.Unlock()
	if err := e.j.save(&rc); err != nil {
		return fmt.Errorf("upload: journal the cancel of %s: %w", u.id, err)
	}
	return nil
}

// markCancelled marks upload id cancelled (ErrUnknown if there is none, or it is cancelled already).
// With background, it also books a background withdrawal in bg, unless the engine is closed
// (background is then false).
func (e *Engine) markCancelled(id string, background bool) (*upload, bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.ups[id]
	if !ok || u.cancelled {
		return nil, false, ErrUnknown
	}
	u.cancelled = true
	if background && !e.closed {
		e.bg.Add(1)
		if e.withdrawing++; e.withdrawn == nil {
			e.withdrawn = make(chan struct{})
		}
		return u, true, nil
	}
	return u, false, nil
}

// withdrawDone books the end of a cancel finishing in the background.
func (e *Engine) withdrawDone() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.withdrawing--; e.withdrawing == 0 {
		close(e.withdrawn)
		e.withdrawn = nil
	}
}

// CancelsDone returns a channel closed once no cancel is finishing in the background (CancelNoWait):
// every attempt it stopped has returned, every multipart upload it had to abort has had its abort
// answered (or given up on), its data and journal are removed. Already closed when none runs.
func (e *Engine) CancelsDone() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.withdrawn == nil {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return e.withdrawn
}

// withdraw is the work of a cancel once u is marked cancelled. It waits at most cancelWait for the
// running attempt: one whose publishing request is still out then is left to finish on its own,
// and what it may publish is deleted by the upload's clean-up (cleanup.go), journaled first, so that
// a restart deletes it too. What else may be on the platform (files u superseded, an earlier
// request's publication whose answer was lost, a multipart upload created while the cancel did not
// wait, an object completed in the storage but not registered) goes the same way.
func (e *Engine) withdraw(u *upload) error {
	id := u.id
	e.mu.Lock()
	stop, done := u.stop, u.done
	e.mu.Unlock()
	// One bound for the whole cancel: waiting for the attempt, then aborting its multipart upload.
	deadline := time.Now().Add(cancelWait)
	returned := true
	if stop != nil {
		stop()
		if e.o.stopped != nil {
			e.o.stopped(id)
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-done:
		case <-t.C:
			returned = false
			e.log.Info("upload: cancelled while its publishing request is out; its outcome is handled when it comes",
				"upload", id)
		}
		t.Stop()
	}
	u.jmu.Lock()
	e.mu.Lock()
	u.withdrawn = true
	r, landed := u.rec, u.landed
	delete(e.ups, id)
	e.forgetVersionLocked(u.rec)
	e.mu.Unlock()
	if returned && r.S3UploadID != "" && !r.ObjectDone {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		if err := e.abort(ctx, &r); err != nil {
			// Not within the cancel's bound: the clean-up tries again (journaled).
			e.log.Warn("upload: abort multipart upload; retried in the background", "upload", id, "name", r.Name, "err", err)
		} else {
			r.S3UploadID = ""
		}
		cancel()
	}
	// A completed object (ObjectDone) is owed too: registered or not, it is in the user's storage,
	// and only the clean-up deletes it (after any publication holding it).
	owed := !returned || r.PublishedSent || r.owesDeletions() || landed != "" || r.S3UploadID != "" && !r.ObjectDone ||
		r.ObjectDone && r.ObjectKey != ""
	var err error
	if owed {
		r.Withdrawn, r.State, r.NextTry = true, StateQueued, time.Time{}
		e.mu.Lock()
		u.rec = r
		e.mu.Unlock()
		// The record first: a crash after it deletes what is owed on the next start.
		err = errors.Join(e.j.save(&r), removeIfExists(e.j.partsPath(id)), removeIfExists(r.Data), syncDir(e.pending))
	} else {
		err = errors.Join(removeIfExists(r.Data), e.j.remove(id), syncDir(e.pending))
	}
	u.jmu.Unlock()
	if owed {
		var wait <-chan struct{}
		if !returned {
			wait = done
		}
		e.startCleanup(u, wait, true)
	}
	e.nudge()
	return err
}

// Rename changes the name a pending upload is published under. The new name is recorded even while an
// attempt is sending the old one, so every later attempt carries it; Rename then returns ErrPublishing,
// because that attempt may still publish under the old name (the caller checks the name it got).
func (e *Engine) Rename(id, name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("upload: bad name %q", name)
	}
	var publishing bool
	err := e.editRecord(id, true, func(u *upload) {
		// Done: the fs layer has not taken the confirmation yet (finish), so the file may still be
		// renamed: published as it was, it is published again under the new name.
		publishing = u.publishing || u.rec.State == StateDone
		u.rec.Name = name
		if u.rec.State == StateRejected { // another name may be accepted: tried again
			u.rec.State, u.rec.NextTry = StateQueued, time.Time{}
		}
	})
	if err != nil {
		return err
	}
	e.nudge()
	if publishing {
		return ErrPublishing
	}
	return nil
}

// Supersede books library files that upload id's publication replaces: stale publications of the
// same file in uploads/ under a name the user had left by then (Handover moves them from an upload to
// the version replacing it). They are journaled with the upload and deleted once it is published
// (after a restart too), never before: until then they hold the only copy on the platform.
func (e *Engine) Supersede(id string, fileIDs ...string) error {
	return e.editRecord(id, false, func(u *upload) { addSupersedes(&u.rec, fileIDs...) })
}

// Handover moves the files upload from supersedes to upload to: to is a new version of the same file
// in uploads/ that replaces from (which the caller then cancels), so the stale publications are
// deleted once to is published, not when from is withdrawn (until then they may hold the only copy
// of the file on the platform). They are journaled with to before they leave from's record, and so
// are the objects they hold that from stopped using (Dropped), deleted after them.
func (e *Engine) Handover(from, to string) error {
	e.mu.Lock()
	fu, ok := e.ups[from]
	var ids []string
	var objs []storedObject
	if ok {
		ids, objs = slices.Clone(fu.rec.Supersedes), slices.Clone(fu.rec.Dropped)
	}
	e.mu.Unlock()
	if !ok || len(ids) == 0 && len(objs) == 0 {
		return nil
	}
	// The objects the stale files hold (Dropped) go with them: deleted after them.
	err := e.editRecord(to, false, func(u *upload) {
		addSupersedes(&u.rec, ids...)
		addObjects(&u.rec, objs)
	})
	if err != nil {
		return err
	}
	err = e.editRecord(from, false, func(u *upload) {
		u.rec.Supersedes = slices.DeleteFunc(u.rec.Supersedes, func(s string) bool { return slices.Contains(ids, s) })
		u.rec.Dropped = slices.DeleteFunc(u.rec.Dropped, func(o storedObject) bool { return slices.Contains(objs, o) })
	})
	if errors.Is(err, ErrUnknown) {
		return nil // published (deleted them) or cancelled meanwhile: to's booking stands
	}
	return err
}

// editRecord applies edit to the record of pending upload id under its journal lock and e.mu, then
// journals the record. ErrUnknown when the upload is gone or cancelled, or done unless done is true
// (published, its confirmation being told: finish).
func (e *Engine) editRecord(id string, done bool, edit func(u *upload)) error {
	e.mu.Lock()
	u, ok := e.ups[id]
	e.mu.Unlock()
	if !ok {
		return ErrUnknown
	}
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	if _, ok := e.ups[id]; !ok || u.cancelled || u.rec.State == StateDone && !done {
		e.mu.Unlock()
		return ErrUnknown
	}
	edit(u)
	r := u.rec
	e.mu.Unlock()
	return e.j.save(&r)
}

// Snapshot lists pending uploads (oldest first), then damaged ones, then recently finished ones.
func (e *Engine) Snapshot() []Status {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Status, 0, len(e.ups)+len(e.broken)+len(e.finished))
	for _, u := range e.ups {
		// Withdrawn: its clean-up is under way; done: in finished (OnDone is being told).
		if !u.cancelled && u.rec.State != StateDone {
			out = append(out, e.statusLocked(u, now))
		}
	}
	slices.SortFunc(out, func(a, b Status) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	out = append(out, e.broken...)
	keep := e.finished[:0]
	for _, s := range e.finished {
		if now.Sub(s.Finished) < keepDone {
			keep = append(keep, s)
		}
	}
	e.finished = keep
	return append(out, e.finished...)
}

// Status of one upload by id (pending, damaged or recently done).
func (e *Engine) Status(id string) (Status, bool) {
	for _, s := range e.Snapshot() {
		if s.ID == id {
			return s, true
		}
	}
	return Status{}, false
}

func (e *Engine) statusLocked(u *upload, now time.Time) Status {
	r := &u.rec
	done := u.confirmed.Load()
	u.inflight.Range(func(k, _ any) bool {
		done += k.(*partBody).plain()
		return true
	})
	done = min(done, r.Size)
	u.rate = u.meter.observe(now, done)
	st := r.State
	if st == StateUploading && !u.running {
		st = StateQueued
	}
	return Status{ID: u.id, Name: r.Name, Size: r.Size, Done: done, State: st, Error: r.LastError, Rate: u.rate,
		Attempts: r.Attempts, NextTry: r.NextTry, Path: r.Data, Created: r.Created,
		Multipart: !e.small(r.Size)}
}

func (e *Engine) nudge() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// schedule starts uploads whose turn has come, at most Files at once.
func (e *Engine) schedule(ctx context.Context) {
	defer e.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next := e.startDue(ctx)
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		case <-timer.C:
		}
	}
}

// startDue starts what it can and says how long until the next retry is due.
func (e *Engine) startDue(ctx context.Context) time.Duration {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	next := time.Hour
	cands := make([]*upload, 0, len(e.ups))
	for _, u := range e.ups {
		if !u.running && !u.cancelled && u.rec.State != StateRejected {
			cands = append(cands, u)
		}
	}
	slices.SortFunc(cands, func(a, b *upload) int { return a.rec.Created.Compare(b.rec.Created) })
	for _, u := range cands {
		if wait := u.rec.NextTry.Sub(now); wait > 0 {
			next = min(next, wait)
			continue
		}
		if e.running >= e.o.Files || ctx.Err() != nil {
			break
		}
		actx, stop := context.WithCancel(ctx)
		u.running, u.stop, u.done = true, stop, make(chan struct{})
		e.running++
		e.wg.Add(1)
		go e.attempt(actx, u)
	}
	return next
}

// attempt runs one attempt of u and books its outcome.
func (e *Engine) attempt(ctx context.Context, u *upload) {
	defer e.wg.Done()
	f, err := e.transfer(ctx, u)
	e.mu.Lock()
	cancelled := u.cancelled
	e.mu.Unlock()
	switch {
	case err == nil && cancelled:
		// Withdrawn (removed or replaced in uploads/) while its publishing request was on its way,
		// and published all the same: the library must not keep a version the user removed or
		// replaced (if it landed last, files/ would show it). The withdrawal's clean-up deletes it.
		e.mu.Lock()
		e.landLocked(u, f.ID)
		e.mu.Unlock()
	case err == nil:
		e.finish(u, f)
	case cancelled || ctx.Err() != nil:
		// Cancel owns the clean-up; Close leaves the journal as it is for the next start.
	case errors.Is(err, ErrDamaged):
		e.moveAside(u, err.Error())
	default:
		if permanent(err) && e.writerSumWrong(ctx, u) {
			// The platform refused the writer's sha512, rightly: the next attempt sends the engine's.
			e.log.Warn("upload refused: the sha512 its writer computed was wrong; sending the data's", "upload", u.id, "err", err)
			e.mu.Lock()
			u.rec.NextTry = e.now()
			e.mu.Unlock()
			break
		}
		e.failed(u, err)
	}
	e.mu.Lock()
	u.running = false
	u.stop()
	close(u.done)
	e.running--
	var tell func(Status)
	var st Status
	if u.rec.State == StateRejected && !u.cancelled && e.rejected != nil {
		tell, st = e.rejected, e.statusLocked(u, e.now())
		if u.sent != "" {
			// The name refused, not the record's: a Rename during the request took the upload back
			// (the listener sees the names differ and leaves the file to the new attempt).
			st.Name = u.sent
		}
	}
	e.mu.Unlock()
	e.nudge()
	if tell != nil {
		tell(st)
	}
}

// writerSumWrong is asked before a refusal is taken for good: the sha512 sent was the one the file's
// writer computed (EnqueueHashed), taken without hashing the data, and a wrong one is refused (a
// mismatch is a 400). It hashes the data (locally: no request) and, when the sums differ, journals the
// data's own and reports true, so the refusal costs one attempt, not the file. A writer's sum that was
// right is marked checked, and the refusal stands (no second send).
func (e *Engine) writerSumWrong(ctx context.Context, u *upload) bool {
	e.mu.Lock()
	r := u.rec
	e.mu.Unlock()
	if !r.SumFromWriter {
		return false
	}
	sum, n, err := HashFile(ctx, r.Data)
	if err != nil {
		return false // unreadable: the refusal stands, as for any other file
	}
	wrong := sum != r.SHA512 || n != r.Size
	if _, err := e.update(u, func(r *record) { r.SHA512, r.Size, r.SumFromWriter = sum, n, false }); err != nil {
		e.log.Error("upload: journal", "upload", u.id, "err", err)
		return false
	}
	return wrong
}

// failed books a failed attempt: retried after a backoff, shown as failed after FailAfter attempts.
func (e *Engine) failed(u *upload, err error) {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	r := &u.rec
	r.Attempts++
	r.LastError = err.Error()
	r.State = StateRetrying
	if r.Attempts >= e.o.FailAfter {
		r.State = StateFailed
	}
	r.NextTry = e.now().Add(e.retryDelay(r.Attempts))
	// A refusal is for good only for the name it refused: one renamed while the request was on its
	// way is tried again under its new name.
	if permanent(err) && (u.sent == "" || u.sent == r.Name) {
		r.State, r.NextTry = StateRejected, time.Time{}
	}
	rc := *r
	e.mu.Unlock()
	if rc.State == StateRejected {
		e.log.Error("upload rejected by the platform; not retried", "upload", u.id, "name", rc.Name, "err", err)
		if err := e.j.save(&rc); err != nil {
			e.log.Error("upload: journal", "upload", u.id, "err", err)
		}
		return
	}
	e.log.Warn("upload failed, will retry", "upload", u.id, "name", rc.Name, "attempt", rc.Attempts,
		"retry_in", rc.NextTry.Sub(e.now()).Round(time.Millisecond), "err", err)
	if err := e.j.save(&rc); err != nil {
		e.log.Error("upload: journal", "upload", u.id, "err", err)
	}
}

// permanent reports a refusal of the platform that a retry would not change: a 4xx other than the
// ones that may pass (401/403 with a key fixed, 404, 408, 409, 429). [I] which 4xx the platform means
// for good is inferred (rescale-api.md); this is the one place that decides.
func permanent(err error) bool {
	var ae *remote.APIError
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusRequestURITooLong,
		http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// retryDelay is the backoff before attempt n+1: doubling from RetryMin, capped, with jitter.
func (e *Engine) retryDelay(n int) time.Duration {
	d := e.o.RetryMin
	for i := 1; i < n && d < e.o.RetryMax; i++ {
		d *= 2
	}
	d = min(d, e.o.RetryMax)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// finish books a confirmed publication. One under a name the file has left (renamed while the
// request was out) is stale: the upload goes on under its new name, the stale file booked in its
// Supersedes in the same journal write, so that neither a crash nor anything else leaves it behind.
// Else the files it supersedes are deleted and the record marked done (still holding those whose
// deletion failed: a clean-up record, retried, across a restart too), and OnDone told.
//
// The data and the done record stay until OnDone has returned: until the fs layer has taken the
// confirmation, the file is still in uploads/, and a rename there (Rename) or a removal (Cancel)
// still reaches this upload. A rename is journaled in the done record and the upload published again
// under the new name (after a crash too: load); a removal deletes the publication. Once OnDone has
// returned, the file has left uploads/ and the record goes.
func (e *Engine) finish(u *upload, f remote.File) {
	// A newer version of the file on its way carries the file's name: the publication is its to
	// supersede, not one to publish again under a new name (version.go).
	newer := e.replaced(u.id)
	if e.landedCancelled(u, f) || !newer && e.republish(u, f) {
		return
	}
	left := e.deleteSuperseded(u, f.ID)
	u.jmu.Lock()
	e.mu.Lock()
	if u.cancelled {
		// Cancelled during the deletions: the withdrawal's, its record the clean-up's (see
		// landedCancelled), which deletes what is left of Supersedes too.
		e.landLocked(u, f.ID)
		e.mu.Unlock()
		u.jmu.Unlock()
		return
	}
	// The name sent, not the record's (a Rename during the request changed that) nor the one the
	// platform stored (it may store a name differently): only a rename is a rename.
	sent := cmp.Or(u.sent, u.rec.Name)
	if u.rec.Name != sent && !newer { // renamed during the deletions
		rc := e.republishLocked(u, f, sent)
		e.mu.Unlock()
		e.saveRepublished(u, rc)
		u.jmu.Unlock()
		return
	}
	u.rec.State = StateDone
	u.rec.Supersedes = left
	u.rec.PublishedSent, u.rec.Sent = false, nil
	u.rec.Published, u.rec.PublishedName = f.ID, sent
	u.rec.PublishedUnsure = f.ID == u.unsure
	r := u.rec
	st := e.statusLocked(u, e.now())
	e.mu.Unlock()
	if err := e.j.save(&r); err != nil {
		e.log.Error("upload: journal", "upload", u.id, "err", err)
	}
	u.jmu.Unlock()
	st.State, st.Done, st.Error, st.Path, st.FileID, st.Finished, st.Name = StateDone, r.Size, "", "", f.ID, e.now(), sent
	e.mu.Lock()
	e.finished = append(e.finished, st)
	e.mu.Unlock()
	if e.o.OnDone != nil {
		e.o.OnDone(st, f)
	}
	// Once the fs layer has taken the confirmation, a file written again before it is on its way as a
	// newer version (its staging record says it replaces u): the publication is booked with it, before
	// the record that knows it goes. A crash before that finds the done record (load).
	handed, herr := e.handOver(&r, f.ID)
	if herr != nil {
		e.log.Error("upload: journal", "upload", u.id, "err", herr)
	}

	u.jmu.Lock()
	e.mu.Lock()
	if u.cancelled || u.rec.Name != sent && !handed { // not published for good after all
		e.finished = slices.DeleteFunc(e.finished, func(s Status) bool { return s.ID == u.id })
	}
	switch {
	case u.cancelled:
		// Removed (or taken back under a temporary name) before the fs layer took the confirmation:
		// the withdrawal deletes the publication (uploads/ said the file is gone).
		e.landLocked(u, f.ID)
		e.mu.Unlock()
		u.jmu.Unlock()
		return
	case u.rec.Name != sent && !handed:
		// Renamed before the fs layer took the confirmation (the rename is journaled: Rename).
		rc := e.republishLocked(u, f, sent)
		e.mu.Unlock()
		e.saveRepublished(u, rc)
		u.jmu.Unlock()
		return
	}
	e.mu.Unlock()
	err := errors.Join(removeIfExists(r.Data), syncDir(e.pending), removeIfExists(e.j.partsPath(u.id)))
	owes := r.owesDeletions() // superseded files whose deletion failed, objects they held (Dropped)
	if !owes {
		err = errors.Join(err, e.j.remove(u.id))
	}
	// Out of ups once its files are gone (a Rename waiting for jmu finds nothing then).
	e.mu.Lock()
	delete(e.ups, u.id)
	e.forgetVersionLocked(u.rec)
	u.withdrawn = true // its record, if any, is its clean-up's
	e.mu.Unlock()
	u.jmu.Unlock()
	if err != nil {
		e.log.Error("upload: clean up after publishing", "upload", u.id, "err", err)
	}
	e.log.Info("upload published", "upload", u.id, "name", r.Name, "file", f.ID, "size", r.Size)
	if owes {
		e.startCleanup(u, nil, false)
	}
}

// landedCancelled books f, published by u, for deletion when u was cancelled since the attempt
// looked (a cancel that lost the race with the answer): its withdrawal deletes it (attempt).
func (e *Engine) landedCancelled(u *upload, f remote.File) bool {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !u.cancelled {
		return false
	}
	e.landLocked(u, f.ID)
	return true
}

// landLocked books f, published by u although u was cancelled, for u's withdrawal to delete; unless
// f was only taken for u's publication (u.unsure): then it may be another tool's, and stays.
func (e *Engine) landLocked(u *upload, f string) {
	if f == u.unsure {
		e.keepLocked(cmp.Or(u.sent, u.rec.Name), f, keptRemoved)
		e.log.Warn("upload: cancelled; the file taken for its publication after a lost answer is left in the library: "+
			"nothing tells it from another tool's upload of the same file", "upload", u.id, "name", u.rec.Name, "file", f)
		return
	}
	u.landed = f
}

// republish handles a publication under a name the file has left (u was renamed while its publishing
// request was out): see republishLocked. It reports false for a publication under the current name.
func (e *Engine) republish(u *upload, f remote.File) bool {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	if u.sent == "" || u.sent == u.rec.Name || u.cancelled {
		e.mu.Unlock()
		return false
	}
	rc := e.republishLocked(u, f, u.sent)
	e.mu.Unlock()
	e.saveRepublished(u, rc)
	return true
}

// republishLocked books f, published as sent, a name u has left, as superseded, and queues u again
// under its current name; a multipart upload sends a new object (f holds the old one, and f's
// deletion must not take the new publication's data with it). It returns the record for
// saveRepublished to journal in one write. u.jmu and e.mu held.
func (e *Engine) republishLocked(u *upload, f remote.File, sent string) record {
	r := &u.rec
	if f.ID == u.unsure {
		e.keepLocked(sent, f.ID, keptRenamed)
		e.log.Warn("upload: the file taken for its publication under a name it has left is left in the library: "+
			"nothing tells it from another tool's upload of the same file", "upload", u.id, "sent", sent, "file", f.ID)
	} else {
		if !slices.Contains(r.Supersedes, f.ID) {
			r.Supersedes = append(r.Supersedes, f.ID)
		}
		r.dropObject() // f holds it: deleted after f
	}
	r.PublishedSent, r.Sent = false, nil
	if r.ObjectDone || r.S3UploadID != "" {
		r.S3UploadID, r.ObjectDone = "", false
	}
	r.State, r.NextTry = StateQueued, time.Time{}
	r.Published, r.PublishedName = "", ""
	e.log.Info("upload: published under a name the file has left; publishing it under its new one", "upload", u.id,
		"sent", sent, "name", r.Name, "stale", f.ID)
	return *r
}

// saveRepublished journals the record republishLocked made. u.jmu held.
func (e *Engine) saveRepublished(u *upload, rc record) {
	u.confirmed.Store(0)
	if err := e.j.save(&rc); err != nil {
		e.log.Error("upload: journal", "upload", u.id, "err", err)
	}
	e.nudge()
}

// deleteSuperseded deletes the library files u's publication (file published) replaces, and returns
// those it could not delete (one already gone is fine).
func (e *Engine) deleteSuperseded(u *upload, published string) []string {
	e.mu.Lock()
	ids, name := slices.Clone(u.rec.Supersedes), u.rec.Name
	e.mu.Unlock()
	var left []string
	for _, id := range ids {
		if id == published {
			continue
		}
		ctx, cancel := context.WithTimeout(e.engineCtx(), supersededTimeout)
		err := e.c.DeleteFile(ctx, id)
		cancel()
		switch {
		case err == nil:
			e.log.Info("upload: deleted the publication under a name the file has left", "upload", u.id, "name", name, "file", id)
		case errors.Is(err, remote.ErrNotFound):
		default:
			e.log.Warn("upload: deleting a publication under a name the file has left failed; retried later", "upload", u.id,
				"name", name, "file", id, "err", err)
			left = append(left, id)
		}
	}
	return left
}

// supersededTimeout bounds the deletion of one superseded or withdrawn file (its retries included).
const supersededTimeout = 30 * time.Second

// moveAside moves a damaged upload's files into damaged/ and reports it.
func (e *Engine) moveAside(u *upload, reason string) {
	u.jmu.Lock()
	e.mu.Lock()
	r := u.rec
	delete(e.ups, u.id)
	e.forgetVersionLocked(u.rec)
	e.mu.Unlock()
	e.quarantine(u.id, r.Name, r.Size, r.Created, reason, r.Data)
	u.jmu.Unlock()
}

// quarantine moves a record, its parts log and its data (if any) into damaged/, with a .reason file.
func (e *Engine) quarantine(id, name string, size int64, created time.Time, reason string, data string) {
	e.log.Error("upload damaged, kept aside", "upload", id, "name", name, "reason", reason, "folder", e.damaged)
	var errs []error
	move := func(src, dst string) {
		if src == "" {
			return
		}
		if err := os.Rename(src, filepath.Join(e.damaged, dst)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	move(e.j.recordPath(id), id+".json")
	move(e.j.partsPath(id), id+".parts")
	move(data, id+".data")
	errs = append(errs, writeFileSync(filepath.Join(e.damaged, id+".reason"), []byte(reason+"\n")),
		syncDir(e.j.dir), syncDir(e.pending))
	if err := errors.Join(errs...); err != nil {
		e.log.Error("upload: moving damaged upload aside", "upload", id, "err", err)
	}
	e.mu.Lock()
	e.broken = append(e.broken, Status{ID: id, Name: name, Size: size, State: StateDamaged, Error: reason,
		Path: filepath.Join(e.damaged, id+".data"), Created: created})
	e.mu.Unlock()
}

// load reads the journal: records resume, damaged ones are moved aside, finished ones cleaned up.
func (e *Engine) load() error {
	ents, err := os.ReadDir(e.j.dir)
	if err != nil {
		return fmt.Errorf("upload: journal: %w", err)
	}
	known := map[string]bool{}
	// Done records last: one handed over to the newer version of its file (handOver) looks for it
	// among the pending uploads, whatever the order of their names.
	// Each record is read once, here.
	type read struct {
		r   *record
		err error
	}
	records := map[string]read{}
	for _, ent := range ents {
		if strings.HasSuffix(ent.Name(), ".json") {
			r, err := readRecord(filepath.Join(e.j.dir, ent.Name()), e.pending)
			records[ent.Name()] = read{r, err}
		}
	}
	done := func(name string) int {
		rd := records[name]
		return b2i(rd.err == nil && rd.r != nil && rd.r.State == StateDone)
	}
	slices.SortStableFunc(ents, func(a, b os.DirEntry) int { return cmp.Compare(done(a.Name()), done(b.Name())) })
	for _, ent := range ents {
		name := ent.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			_ = os.Remove(filepath.Join(e.j.dir, name)) // an atomic write cut short; the old file stands
			continue
		case !strings.HasSuffix(name, ".json"):
			continue
		}
		id := strings.TrimSuffix(name, ".json")
		known[id] = true
		r, err := records[name].r, records[name].err
		if err != nil {
			e.quarantine(id, "", 0, time.Time{}, "journal record: "+err.Error(), e.lostData(id))
			continue
		}
		handed := false
		if r.State == StateDone && r.Published != "" {
			// Published, and a crash before the record went: a newer version of the file in staging
			// (or queued) supersedes the publication, as finish would have booked it (version.go).
			if handed, err = e.handOver(r, r.Published); err != nil {
				return err
			}
		}
		if !handed && r.renamedDone() && fileExists(r.Data) {
			// Published, then renamed before the fs layer took the confirmation, then a crash:
			// published again under the new name, the publication under the old one superseded.
			u := &upload{id: id, rec: *r}
			rc := e.republishLocked(u, remote.File{ID: r.Published}, r.PublishedName)
			if err := e.j.save(&rc); err != nil {
				return fmt.Errorf("upload: journal: %w", err)
			}
			r = &rc
		}
		if r.isCleanup() {
			// Over, but leftovers on the platform are still to be deleted: the clean-up does it (Start).
			_ = errors.Join(removeIfExists(r.Data), removeIfExists(e.j.partsPath(id)))
			e.discardVersion(r)
			e.gone[id] = &upload{id: id, rec: *r, withdrawn: true}
			continue
		}
		if _, err := os.Stat(r.Data); errors.Is(err, fs.ErrNotExist) && r.Source != "" && r.State != StateDone {
			// Enqueue was cut between journaling and moving the data: finish the move.
			if err := os.Rename(r.Source, r.Data); err == nil {
				_ = syncDir(e.pending)
			}
		}
		if r.State == StateDone {
			_ = errors.Join(removeIfExists(r.Data), e.j.remove(id))
			continue
		}
		if _, err := os.Stat(r.Data); err != nil {
			e.quarantine(id, r.Name, r.Size, r.Created, "staging data missing: "+err.Error(), "")
			continue
		}
		if _, err := e.j.loadParts(id); err != nil {
			e.quarantine(id, r.Name, r.Size, r.Created, "parts journal: "+err.Error(), r.Data)
			continue
		}
		if err := e.j.repairParts(id); err != nil {
			return fmt.Errorf("upload: parts journal %s: %w", id, err)
		}
		r.NextTry = time.Time{} // a new start tries at once
		e.ups[id] = &upload{id: id, rec: *r}
		if r.Replaces != "" {
			e.versions[r.Replaces] = id
		}
	}
	if err := e.withdrawReplaced(); err != nil {
		return err
	}
	// Data that no record points to was never silently dropped: report it.
	pend, err := os.ReadDir(e.pending)
	if err != nil {
		return fmt.Errorf("upload: pending: %w", err)
	}
	for _, ent := range pend {
		if !known[ent.Name()] {
			e.quarantine(ent.Name(), "", 0, time.Time{}, "pending data without a journal record", filepath.Join(e.pending, ent.Name()))
		}
	}
	return nil
}

// withdrawReplaced finishes the queueing of new versions a crash cut short (EnqueueVersion): an old
// version still pending beside its new one is withdrawn, as the cancel that was to follow would have
// (journaled Withdrawn: a clean-up record, load's own rule), after its stale publications are handed
// to the new version (Handover's rule: deleted once the new version is published, not before). Each
// step is journaled before the next, so a crash in the middle is finished by the next load.
func (e *Engine) withdrawReplaced() error {
	// Until nothing changes: a record withdrawn here may itself name a version it replaced. A new
	// version withdrawn since (removed) still withdraws its old one: the removal's cancel of the
	// file's current version came first, the cancel of the old one was to follow.
	for changed := true; changed; {
		changed = false
		for _, nu := range e.records() {
			old, ok := e.ups[nu.rec.Replaces]
			if nu.rec.Replaces == "" || !ok || old == nu {
				continue
			}
			if err := e.withdrawReplacedOne(nu, old); err != nil {
				return err
			}
			changed = true
		}
	}
	return nil
}

// records are the uploads load keeps: pending, and clean-up records.
func (e *Engine) records() []*upload {
	out := make([]*upload, 0, len(e.ups)+len(e.gone))
	for _, u := range e.ups {
		out = append(out, u)
	}
	for _, u := range e.gone {
		out = append(out, u)
	}
	return out
}

// withdrawReplacedOne withdraws old, replaced by nu (withdrawReplaced).
func (e *Engine) withdrawReplacedOne(nu, old *upload) error {
	var moved bool
	nu.rec.Supersedes, moved = appendMissing(nu.rec.Supersedes, old.rec.Supersedes...)
	// The objects the stale files hold go with them: deleted after them.
	dropped := addObjects(&nu.rec, old.rec.Dropped)
	if moved || dropped {
		if err := e.j.save(&nu.rec); err != nil {
			return fmt.Errorf("upload: journal: %w", err)
		}
	}
	r := old.rec
	r.Supersedes, r.Dropped = nil, nil
	if err := e.withdrawLoaded(r); err != nil {
		return err
	}
	e.log.Info("upload: withdrew the old version of a file whose new version was queued before a crash",
		"upload", r.ID, "name", r.Name, "new", nu.id)
	return nil
}

// withdrawLoaded withdraws pending upload r at load, as a cancel would: journaled Withdrawn (a
// clean-up record, which deletes what it left on the platform), its data removed.
func (e *Engine) withdrawLoaded(r record) error {
	r.Withdrawn, r.NextTry = true, time.Time{}
	if err := e.j.save(&r); err != nil {
		return fmt.Errorf("upload: journal: %w", err)
	}
	_ = errors.Join(removeIfExists(r.Data), removeIfExists(e.j.partsPath(r.ID)), syncDir(e.pending))
	delete(e.ups, r.ID)
	e.forgetVersionLocked(r)
	e.gone[r.ID] = &upload{id: r.ID, rec: r, withdrawn: true}
	return nil
}

// finishTakeBacks finishes the take-backs of queued uploads a crash cut short (StagingRecord.TakesBack):
// a copy sealed withdraws the upload still pending (the cancel that was to follow), so that the
// next start does not publish it under the name the file was renamed from; a copy not sealed (cut
// short, perhaps mid-copy) is discarded, and the upload, which holds the whole file, stays.
func (e *Engine) finishTakeBacks() error {
	kept := e.staged[:0]
	for _, sg := range e.staged {
		old, ok := e.ups[sg.Record.Replaces]
		if !sg.Record.TakesBack || sg.Record.Replaces == "" || !ok {
			kept = append(kept, sg)
			continue
		}
		if !sg.Complete() {
			if err := e.DiscardStaging(sg.Path); err != nil {
				return fmt.Errorf("upload: discard a copy cut short: %w", err)
			}
			e.log.Info("upload: discarded the copy of a queued file a crash cut short as it was renamed to a temporary name",
				"upload", old.id, "name", old.rec.Name)
			continue
		}
		if err := e.withdrawLoaded(old.rec); err != nil {
			return err
		}
		e.log.Info("upload: withdrew a queued file renamed to a temporary name before a crash", "upload", old.id,
			"name", old.rec.Name, "path", sg.Record.Path)
		kept = append(kept, sg)
	}
	e.staged = kept
	return nil
}

// discardVersion finishes a CancelVersion a crash cut short: the staging file of the new version of
// withdrawn upload r is discarded, so that the next start neither shows nor queues it. Only while
// its record still says it replaces r: a staging file made since under the same name is another's.
func (e *Engine) discardVersion(r *record) {
	if r.Discards == "" || filepath.Dir(r.Discards) != e.staging {
		return
	}
	sr, err := readStagingRecord(r.Discards + stagingExt)
	if err != nil || sr.Replaces != r.ID {
		return
	}
	if err := e.DiscardStaging(r.Discards); err != nil {
		e.log.Error("upload: discard the new version of a removed file", "upload", r.ID, "file", r.Discards, "err", err)
		return
	}
	e.log.Info("upload: discarded the new version of a file removed before a crash", "upload", r.ID, "name", r.Name)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// lostData is the data path of an upload whose record cannot be read: by convention pending/<id>.
func (e *Engine) lostData(id string) string {
	p := filepath.Join(e.pending, id)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// newID returns a random upload id.
func newID() string {
	b := make([]byte, 10)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
