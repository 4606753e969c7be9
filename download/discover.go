package download

import (
	"context"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

// jobState is where a job stands for the Downloader.
type jobState int

const (
	stateRunning jobState = iota // not completed, as far as the last look showed
	stateTooOld                  // completed before MaxJobAge when first seen: never downloaded
	stateQueued                  // eligible, waiting for a slot (or for nextTry after a failure)
	stateActive                  // downloading now
	stateDone                    // every matching file is in Dir
	stateFailed                  // the last attempt failed; retried at nextTry
)

func (s jobState) String() string {
	switch s {
	case stateQueued:
		return "queued"
	case stateActive:
		return "downloading"
	case stateDone:
		return "done"
	case stateFailed:
		return "failed"
	case stateTooOld:
		return "too old"
	}
	return "running"
}

// job is one job the Downloader has seen. Its fields are protected by Downloader.mu.
type job struct {
	id           string
	state        jobState
	completedAt  time.Time
	succeeded    bool
	seenRunning  bool // seen not completed by this Downloader: its completion happened while we ran
	attempts     int  // failed attempts in a row
	nextTry      time.Time
	progress     progress
	lastFinished time.Time
}

// loop runs rounds every Poll, and sooner when Notify asks, until the context ends.
func (d *Downloader) loop() {
	defer d.wg.Done()
	ctx := d.ctx
	d.round(ctx, true)
	t := time.NewTimer(d.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.round(ctx, true)
			t.Reset(d.opts.Poll)
		case <-d.wake:
			d.round(ctx, false)
		}
	}
}

// round lists the jobs (when list is set, else only looks at the jobs Notify named), fetches the status
// history of those that completed and are not known yet, queues the eligible ones and starts downloads.
func (d *Downloader) round(ctx context.Context, list bool) {
	d.mu.Lock()
	notified := d.notified
	d.notified = make(map[string]bool)
	d.mu.Unlock()

	need := map[string]bool{}
	if list {
		jobs, err := d.api.ListJobs(ctx, nil)
		if ctx.Err() != nil {
			return
		}
		d.mu.Lock()
		if err != nil {
			msg := err.Error()
			if msg != d.pollErr {
				d.log.Error("automatic downloads: cannot list jobs; trying again at the next poll", "err", err)
			}
			d.pollErr = msg
		} else {
			if d.pollErr != "" {
				d.log.Info("automatic downloads: listing jobs works again")
			}
			d.pollErr, d.lastPoll = "", d.now()
			for _, rj := range jobs {
				_, known := d.jobs[rj.ID]
				j := d.jobLocked(rj.ID)
				status := rj.JobStatus.Content
				if status != "" && status != remote.StatusCompleted {
					// Not completed now: its completion, when it comes, happens while we run.
					j.seenRunning = true
				}
				if j.state == stateRunning && (status == remote.StatusCompleted || status == "" && !known) {
					// Only a completion matters; a list without jobStatus gets one look per job.
					need[rj.ID] = true
				}
			}
		}
		d.mu.Unlock()
	}
	d.mu.Lock()
	for id := range notified {
		if j := d.jobLocked(id); j.state == stateRunning {
			need[id] = true
		}
	}
	d.mu.Unlock()

	d.fetchStatuses(ctx, need)
	d.dispatch()
}

// jobLocked returns the job with id, adding it when new.
func (d *Downloader) jobLocked(id string) *job {
	j := d.jobs[id]
	if j == nil {
		j = &job{id: id}
		d.jobs[id] = j
	}
	return j
}

// fetchStatuses fetches the status histories of ids, a few at a time, and queues the jobs that completed
// and are eligible. A failure leaves the job as it was: the next round asks again.
func (d *Downloader) fetchStatuses(ctx context.Context, ids map[string]bool) {
	sem := make(chan struct{}, statusParallel)
	var wg sync.WaitGroup
	for id := range ids {
		if !names.ValidID(id) { // the id names the job's folder
			d.mu.Lock()
			if j := d.jobs[id]; j != nil && j.state == stateRunning {
				j.state = stateTooOld // never downloaded; logged once
				d.log.Warn("automatic downloads: skipping a job whose id cannot be a folder name", "job", id)
			}
			d.mu.Unlock()
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// A job downloaded completely by an earlier run says when it completed: no request.
			if at, succeeded, ok := readStateInfo(d.root, id, d.opts.Query); ok {
				d.noteCompleted(id, at, succeeded)
				return
			}
			st, err := d.api.JobStatuses(ctx, id)
			if err != nil {
				if ctx.Err() == nil {
					d.log.Warn("automatic downloads: cannot read a job's statuses; trying again at the next poll",
						"job", id, "err", err)
				}
				return
			}
			d.noteStatuses(id, st)
		}()
	}
	wg.Wait()
}

// noteStatuses records a job's status history and queues the job when it completed and is eligible.
func (d *Downloader) noteStatuses(id string, st remote.Statuses) {
	if !st.Completed() {
		d.mu.Lock()
		d.jobLocked(id).seenRunning = true
		d.mu.Unlock()
		return
	}
	var at time.Time
	for _, s := range st {
		if s.Status == remote.StatusCompleted {
			at = s.StatusDate.Time
			break
		}
	}
	d.noteCompleted(id, at, st.Succeeded())
}

// noteCompleted queues a completed job when it is eligible.
func (d *Downloader) noteCompleted(id string, completedAt time.Time, succeeded bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	j := d.jobLocked(id)
	if j.state != stateRunning {
		return
	}
	j.completedAt, j.succeeded = completedAt, succeeded
	if !d.eligibleLocked(j) {
		j.state = stateTooOld
		return
	}
	j.state = stateQueued
	if !succeeded {
		d.log.Info("automatic downloads: job failed; downloading its outputs (logs) anyway", "job", id)
	}
}

// eligibleLocked says whether a completed job is to be downloaded: it completed while we ran, or within
// MaxJobAge (0: any age). A job we saw running is always eligible, whatever the clocks say.
func (d *Downloader) eligibleLocked(j *job) bool {
	if j.seenRunning || d.opts.MaxJobAge == 0 {
		return true
	}
	return !j.completedAt.Before(d.now().Add(-d.opts.MaxJobAge))
}

// dispatch starts downloads of queued jobs whose retry time has come, newest completion first, while
// fewer than maxActiveJobs run.
func (d *Downloader) dispatch() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed || d.ctx.Err() != nil {
		return
	}
	now := d.now()
	for d.active < maxActiveJobs {
		var next *job
		for _, j := range d.jobs {
			if j.state != stateQueued && j.state != stateFailed || now.Before(j.nextTry) {
				continue
			}
			if next == nil || j.completedAt.After(next.completedAt) ||
				j.completedAt.Equal(next.completedAt) && j.id < next.id {
				next = j
			}
		}
		if next == nil {
			return
		}
		next.state = stateActive
		next.progress.start(now)
		d.active++
		d.wg.Add(1)
		go d.runJob(next)
	}
}

// runJob downloads one job, records the outcome, and lets the next job start.
func (d *Downloader) runJob(j *job) {
	defer d.wg.Done()
	err := d.downloadJob(d.ctx, j)
	d.mu.Lock()
	d.active--
	now := d.now()
	j.lastFinished = now
	j.progress.finish()
	switch {
	case err == nil:
		j.state, j.attempts, j.nextTry = stateDone, 0, time.Time{}
		j.progress.errs = nil
		d.totals.JobsDone++
	case d.ctx.Err() != nil:
		j.state = stateQueued // stopped by Close: not a failure
	default:
		j.attempts++
		d.totals.Failures++
		j.state = stateFailed
		j.nextTry = now.Add(retryDelay(d.opts.Poll, j.attempts))
		j.progress.addError(err.Error())
		d.log.Warn("automatic downloads: job incomplete; will try again", "job", j.id, "attempt", j.attempts,
			"retryAt", j.nextTry.Format(time.RFC3339), "err", err)
	}
	d.mu.Unlock()
	d.dispatch()
}

// retryDelay is the wait before the attempt after `failures` failed ones: Poll doubled per failure,
// capped at maxRetryDelay (and never below Poll).
func retryDelay(poll time.Duration, failures int) time.Duration {
	d := poll
	for i := 1; i < failures && d < maxRetryDelay; i++ {
		d *= 2
	}
	return max(poll, min(d, maxRetryDelay))
}
