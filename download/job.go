package download

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sync"
	"syscall"

	"github.com/rescalefs/rescalefs/remote"
)

// ErrDiskFull is wrapped by the error of a job stopped because the download folder's disk (or quota)
// is full. Its partial files are kept; the job is retried with the others' backoff.
var ErrDiskFull = errors.New("download folder is full")

// jobRun is one attempt at downloading a job.
type jobRun struct {
	d      *Downloader
	j      *job
	rec    *jobRecord
	ctx    context.Context // cancelled with ErrDiskFull as cause when the disk is full
	cancel context.CancelCauseFunc

	// mu protects errs.
	mu   sync.Mutex
	errs []error
}

func (r *jobRun) fail(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// downloadJob makes one attempt at j: list its outputs (unless its record says a previous run got them
// all and they are still there), then check or fetch each, Parallel files at a time across all jobs.
func (d *Downloader) downloadJob(ctx context.Context, j *job) error {
	d.mu.Lock()
	id, completedAt, succeeded := j.id, j.completedAt, j.succeeded
	d.mu.Unlock()
	if err := d.root.MkdirAll(id, 0o777); err != nil {
		return diskErr(fmt.Errorf("create the job's folder: %w", err))
	}
	rec := loadRecord(d.root, id, d.log)
	if d.stillComplete(j, rec) {
		rec.finish(true, d.opts.Query, completedAt, succeeded, nil, d.now())
		return nil
	}

	files, err := d.api.JobFiles(ctx, id, d.opts.Query)
	if err != nil {
		return fmt.Errorf("list the job's files: %w", err)
	}
	return d.downloadFiles(ctx, j, rec, files)
}

// downloadFiles checks or fetches each of files (outputs of job j, as listed) into the job's folder,
// Parallel files at a time across all jobs, and records the outcome in rec.
func (d *Downloader) downloadFiles(ctx context.Context, j *job, rec *jobRecord, files []remote.File) error {
	d.mu.Lock()
	id, completedAt, succeeded := j.id, j.completedAt, j.succeeded
	d.mu.Unlock()
	if d.opts.FileSeen != nil {
		d.opts.FileSeen(files...)
	}
	items, skips := plan(files, d.opts.Query)
	for _, s := range skips {
		d.log.Warn("automatic downloads: skipping an output whose path cannot be made safe",
			"job", id, "file", s.id, "path", fmt.Sprintf("%q", s.rel), "reason", s.err)
	}
	d.mu.Lock()
	p := &j.progress
	p.filesTotal, p.filesSkipped = len(items), len(skips)
	for _, it := range items {
		p.bytesTotal += it.f.DecryptedSize
	}
	d.mu.Unlock()

	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run := &jobRun{d: d, j: j, rec: rec, ctx: rctx, cancel: cancel}
	var wg sync.WaitGroup
	for _, it := range items {
		if !acquire(rctx, d.fileSem) {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-d.fileSem }()
			if it.f.DecryptedSize > readSize {
				if !acquire(rctx, d.largeSem) {
					return
				}
				defer func() { <-d.largeSem }()
			}
			if err := run.file(it); err != nil {
				// Once the job is stopped, its other files only fail with the reason it stopped.
				if rctx.Err() == nil {
					run.fail(err)
				}
				if errors.Is(err, ErrDiskFull) {
					run.cancel(err) // stop the job's other files: they would fail the same way
				}
			}
		}()
	}
	wg.Wait()

	keep := make(map[string]bool, len(items))
	for _, it := range items {
		keep[it.rel] = true
	}
	if cause := context.Cause(rctx); cause != nil && ctx.Err() == nil && len(run.errs) == 0 {
		run.errs = append(run.errs, cause)
	}
	complete := len(run.errs) == 0 && ctx.Err() == nil
	rec.finish(complete, d.opts.Query, completedAt, succeeded, keep, d.now())
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(run.errs) == 0 {
		return nil
	}
	if len(run.errs) == 1 {
		return run.errs[0]
	}
	return fmt.Errorf("%d files failed; the first: %w", len(run.errs), run.errs[0])
}

// stillComplete says whether the job's record says a previous run downloaded every file matching the
// same query and every recorded file is still there with its recorded size and mtime: then the job is
// not even listed again (outputs of a completed job do not change).
func (d *Downloader) stillComplete(j *job, rec *jobRecord) bool {
	rec.mu.Lock()
	st := rec.st
	files := make(map[string]doneRecord, len(st.Files))
	for k, v := range st.Files {
		files[k] = v
	}
	rec.mu.Unlock()
	if !st.Complete || st.Query != d.opts.Query {
		return false
	}
	var total int64
	for rel, r := range files {
		fi, err := d.root.Lstat(path.Join(st.JobID, rel))
		if err != nil || !fi.Mode().IsRegular() || fi.Size() != r.Size || !fi.ModTime().Equal(r.MTime) {
			return false
		}
		total += r.Size
	}
	d.mu.Lock()
	p := &j.progress
	p.filesTotal, p.filesDone, p.bytesTotal, p.bytesDone = len(files), len(files), total, total
	d.mu.Unlock()
	return true
}

// diskErr marks an error caused by a full disk or quota with ErrDiskFull.
func diskErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrDiskFull, err)
	}
	return err
}

// notExist reports a missing file (or a path through a non-directory).
func notExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// acquire takes a slot of sem unless ctx ends first; it reports whether it holds one. When both are
// ready at once, select picks either: a slot won together with a cancelled context is given back,
// or every such stop would keep one (and after --parallel of them nothing would download again).
func acquire(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		if ctx.Err() != nil {
			<-sem
			return false
		}
		return true
	case <-ctx.Done():
		return false
	}
}
