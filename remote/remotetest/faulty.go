package remotetest

import (
	"context"
	"io"
	"net/url"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// Fault is what a Faulty does to the calls of one method. The zero Fault calls through.
type Fault struct {
	Delay time.Duration // wait this long first (less if the call's context ends)
	Stall bool          // then wait until the call's context ends or Release is called
	Err   error         // then return this instead of calling through; nil = call through
	Times int           // how many calls the fault applies to; 0 = every call until Clear
}

// Any names every method in Faulty.Set: a fault for one method wins over it.
const Any = "*"

// Faulty wraps a platform client so a test can make any call fail, stall or be slow. It satisfies
// the small interfaces upload, download, fs and cache take (every method of *remote.Client is
// promoted; those the consumers call go through the fault table first), so one wrapper tests them
// all against the emulator.
type Faulty struct {
	*remote.Client

	mu      sync.Mutex       // guards the fields below
	faults  map[string]Fault // by method name ("JobFiles") or Any
	calls   map[string]int   // calls made, by method name, faulted or not
	stalled int              // calls waiting in a Stall now
	release chan struct{}    // closed by Release: every stall ends
}

// NewFaulty wraps c; with no fault set it behaves exactly as c.
func NewFaulty(c *remote.Client) *Faulty {
	return &Faulty{Client: c, faults: map[string]Fault{}, calls: map[string]int{}, release: make(chan struct{})}
}

// Set makes calls of method (or of every method, with Any) suffer f.
func (f *Faulty) Set(method string, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[method] = fault
}

// Clear removes the fault of method (or the Any fault).
func (f *Faulty) Clear(method string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.faults, method)
}

// Release ends every stall now in progress (they then fail or call through as their Fault says);
// stalls that start later wait for the next Release.
func (f *Faulty) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.release)
	f.release = make(chan struct{})
}

// Calls is how many calls of method were made (Any: of every method).
func (f *Faulty) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if method != Any {
		return f.calls[method]
	}
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

// Stalled is how many calls are waiting in a Stall now: a test waits on it instead of sleeping.
func (f *Faulty) Stalled() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stalled
}

// enter applies method's fault: it returns a non-nil error when the call must not go through.
func (f *Faulty) enter(ctx context.Context, method string) error {
	f.mu.Lock()
	f.calls[method]++
	key := method
	fault, ok := f.faults[key]
	if !ok {
		key = Any
		fault, ok = f.faults[key]
	}
	if ok && fault.Times > 0 {
		if fault.Times == 1 {
			delete(f.faults, key)
		} else {
			next := fault
			next.Times--
			f.faults[key] = next
		}
	}
	release := f.release
	if fault.Stall {
		f.stalled++
	}
	f.mu.Unlock()
	if !ok {
		return nil
	}
	if fault.Delay > 0 {
		t := time.NewTimer(fault.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if fault.Stall {
		select {
		case <-release:
		case <-ctx.Done():
		}
		f.mu.Lock()
		f.stalled--
		f.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fault.Err
}

// The methods the project's packages call, each behind the fault table.

func (f *Faulty) ListJobs(ctx context.Context, filter url.Values) ([]remote.Job, error) {
	if err := f.enter(ctx, "ListJobs"); err != nil {
		return nil, err
	}
	return f.Client.ListJobs(ctx, filter)
}

func (f *Faulty) GetJob(ctx context.Context, jobID string) (remote.Job, error) {
	if err := f.enter(ctx, "GetJob"); err != nil {
		return remote.Job{}, err
	}
	return f.Client.GetJob(ctx, jobID)
}

func (f *Faulty) JobStatuses(ctx context.Context, jobID string) (remote.Statuses, error) {
	if err := f.enter(ctx, "JobStatuses"); err != nil {
		return nil, err
	}
	return f.Client.JobStatuses(ctx, jobID)
}

func (f *Faulty) JobFiles(ctx context.Context, jobID, search string) ([]remote.File, error) {
	if err := f.enter(ctx, "JobFiles"); err != nil {
		return nil, err
	}
	return f.Client.JobFiles(ctx, jobID, search)
}

func (f *Faulty) RunFiles(ctx context.Context, jobID, runID, search string) ([]remote.File, error) {
	if err := f.enter(ctx, "RunFiles"); err != nil {
		return nil, err
	}
	return f.Client.RunFiles(ctx, jobID, runID, search)
}

func (f *Faulty) LibraryFiles(ctx context.Context, search string) ([]remote.File, error) {
	if err := f.enter(ctx, "LibraryFiles"); err != nil {
		return nil, err
	}
	return f.Client.LibraryFiles(ctx, search)
}

func (f *Faulty) JobRuns(ctx context.Context, jobID string) ([]remote.Run, error) {
	if err := f.enter(ctx, "JobRuns"); err != nil {
		return nil, err
	}
	return f.Client.JobRuns(ctx, jobID)
}

func (f *Faulty) DirectoryContents(ctx context.Context, jobID, runID string) ([]remote.LiveFile, error) {
	if err := f.enter(ctx, "DirectoryContents"); err != nil {
		return nil, err
	}
	return f.Client.DirectoryContents(ctx, jobID, runID)
}

func (f *Faulty) Tail(ctx context.Context, jobID, runID, path string) ([]byte, error) {
	if err := f.enter(ctx, "Tail"); err != nil {
		return nil, err
	}
	return f.Client.Tail(ctx, jobID, runID, path)
}

func (f *Faulty) TailRange(ctx context.Context, jobID, runID, path string, off, n int64) ([]byte, bool, error) {
	if err := f.enter(ctx, "TailRange"); err != nil {
		return nil, false, err
	}
	return f.Client.TailRange(ctx, jobID, runID, path, off, n)
}

func (f *Faulty) Me(ctx context.Context) (remote.User, error) {
	if err := f.enter(ctx, "Me"); err != nil {
		return remote.User{}, err
	}
	return f.Client.Me(ctx)
}

func (f *Faulty) NewS3Client(ctx context.Context, o remote.S3Options) (*remote.S3Client, error) {
	if err := f.enter(ctx, "NewS3Client"); err != nil {
		return nil, err
	}
	return f.Client.NewS3Client(ctx, o)
}

func (f *Faulty) RegisterFile(ctx context.Context, reg remote.FileRegistration) (remote.File, error) {
	if err := f.enter(ctx, "RegisterFile"); err != nil {
		return remote.File{}, err
	}
	return f.Client.RegisterFile(ctx, reg)
}

func (f *Faulty) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error) {
	if err := f.enter(ctx, "UploadSmall"); err != nil {
		return remote.File{}, err
	}
	return f.Client.UploadSmall(ctx, name, r, size, typeID)
}

// ReadRange and ReadRangeVec make Faulty a cache source (the API's /contents/).

func (f *Faulty) ReadRange(ctx context.Context, fileID string, off int64, p []byte) error {
	if err := f.enter(ctx, "ReadRange"); err != nil {
		return err
	}
	return f.Client.ReadRange(ctx, fileID, off, p)
}

func (f *Faulty) ReadRangeVec(ctx context.Context, fileID string, off int64, bufs [][]byte) error {
	if err := f.enter(ctx, "ReadRangeVec"); err != nil {
		return err
	}
	return f.Client.ReadRangeVec(ctx, fileID, off, bufs)
}
