package emulator

import (
	"fmt"
	"time"
)

// Status names and reasons of the job life cycle (rescale-api.md, "Jobs").
const (
	StatusPending   = "Pending"
	StatusQueued    = "Queued"
	StatusStarted   = "Started"
	StatusValidated = "Validated"
	StatusExecuting = "Executing"
	StatusStopping  = "Stopping"
	StatusCompleted = "Completed"
	ReasonSucceeded = "Completed successfully"
	ReasonRunFailed = "A run failed"
	// ReasonUserStopped is the reason of Stopping and Completed after POST .../stop/ [I]: the public
	// sources only show "A run failed".
	ReasonUserStopped = "Job stopped by user"
)

// Lifecycle is how long a submitted job stays in each status before the next. The zero value means
// DefaultLifecycle(); a zero field in a non-zero Lifecycle is an instant transition.
type Lifecycle struct {
	Pending   time.Duration `json:"pending"`
	Queued    time.Duration `json:"queued"`
	Started   time.Duration `json:"started"`
	Validated time.Duration `json:"validated"`
	Executing time.Duration `json:"executing"` // the run: live files grow during this phase
	Stopping  time.Duration `json:"stopping"`  // failed or stopped jobs, before Completed
}

// DefaultLifecycle is a quick but visible life cycle: a demo user sees jobs move within about a minute.
func DefaultLifecycle() Lifecycle {
	return Lifecycle{Pending: 2 * time.Second, Queued: 3 * time.Second, Started: 2 * time.Second,
		Validated: 2 * time.Second, Executing: 60 * time.Second, Stopping: 3 * time.Second}
}

func (l Lifecycle) orDefault() Lifecycle {
	if l == (Lifecycle{}) {
		return DefaultLifecycle()
	}
	return l
}

// beforeExecuting is the time from submission to the start of the run.
func (l Lifecycle) beforeExecuting() time.Duration {
	return l.Pending + l.Queued + l.Started + l.Validated
}

// fitTo returns l with the run length chosen so that submission to Completed takes total: the phases
// before Executing keep their lengths when they fit in half of total, else they are scaled down.
func (l Lifecycle) fitTo(total time.Duration) Lifecycle {
	pre := l.beforeExecuting()
	if fail := l.Stopping; pre+fail > total/2 && pre+fail > 0 {
		scale := float64(total/2) / float64(pre+fail)
		l.Pending = time.Duration(float64(l.Pending) * scale)
		l.Queued = time.Duration(float64(l.Queued) * scale)
		l.Started = time.Duration(float64(l.Started) * scale)
		l.Validated = time.Duration(float64(l.Validated) * scale)
		l.Stopping = time.Duration(float64(l.Stopping) * scale)
	}
	l.Executing = total - l.beforeExecuting()
	return l
}

// statusEvent is one entry of a job's status history.
type statusEvent struct {
	Status string
	Reason string
	At     time.Time
}

// schedule is the job's whole status history, future included, oldest first. Statuses are computed, never
// stored: the clock alone moves jobs on, so an injected clock or a restart needs no timers.
func (j *jobRecord) schedule() []statusEvent {
	ev := []statusEvent{{Status: StatusPending, At: j.Created}}
	if j.Submitted.IsZero() {
		if !j.StopAt.IsZero() {
			ev = append(ev, statusEvent{StatusCompleted, ReasonUserStopped, j.StopAt})
		}
		return ev
	}
	if j.Execute {
		return j.executedSchedule(ev)
	}
	l := j.Lifecycle
	t := j.Submitted.Add(l.Pending)
	ev = append(ev, statusEvent{Status: StatusQueued, At: t})
	t = t.Add(l.Queued)
	ev = append(ev, statusEvent{Status: StatusStarted, At: t})
	t = t.Add(l.Started)
	ev = append(ev, statusEvent{Status: StatusValidated, At: t})
	t = t.Add(l.Validated)
	ev = append(ev, statusEvent{Status: StatusExecuting, At: t})
	t = t.Add(l.Executing)
	natural := ev
	if j.Fail {
		natural = append(natural, statusEvent{StatusStopping, ReasonRunFailed, t},
			statusEvent{StatusCompleted, ReasonRunFailed, t.Add(l.Stopping)})
	} else {
		natural = append(natural, statusEvent{StatusCompleted, ReasonSucceeded, t})
	}
	end := natural[len(natural)-1].At

	// A stop or a forced completion cuts the natural history short.
	cut, stop := time.Time{}, false
	if !j.StopAt.IsZero() && j.StopAt.Before(end) {
		cut, stop = j.StopAt, true
	}
	if !j.CompleteAt.IsZero() && j.CompleteAt.Before(end) && (cut.IsZero() || j.CompleteAt.Before(cut)) {
		cut, stop = j.CompleteAt, false
	}
	if cut.IsZero() {
		return natural
	}
	var out []statusEvent
	for _, e := range natural {
		if e.At.After(cut) || e.Status == StatusCompleted || e.Status == StatusStopping {
			break
		}
		out = append(out, e)
	}
	switch {
	case stop:
		out = append(out, statusEvent{StatusStopping, ReasonUserStopped, cut},
			statusEvent{StatusCompleted, ReasonUserStopped, cut.Add(l.Stopping)})
	case j.Fail:
		out = append(out, statusEvent{StatusStopping, ReasonRunFailed, cut}, statusEvent{StatusCompleted, ReasonRunFailed, cut})
	default:
		out = append(out, statusEvent{StatusCompleted, ReasonSucceeded, cut})
	}
	return out
}

// executedSchedule is the history of a job the local executor runs: the phases before Executing take
// their Lifecycle durations, then Executing lasts until the executor says how the job ended.
func (j *jobRecord) executedSchedule(ev []statusEvent) []statusEvent {
	l := j.Lifecycle
	t := j.Submitted.Add(l.Pending)
	pre := []statusEvent{{Status: StatusQueued, At: t}}
	t = t.Add(l.Queued)
	pre = append(pre, statusEvent{Status: StatusStarted, At: t})
	t = t.Add(l.Started)
	pre = append(pre, statusEvent{Status: StatusValidated, At: t})
	t = t.Add(l.Validated)
	pre = append(pre, statusEvent{Status: StatusExecuting, At: t})
	var ended time.Time
	var reason string
	if j.Exec != nil {
		ended, reason = j.Exec.Ended, j.Exec.Reason
	}
	if ended.IsZero() {
		ev = append(ev, pre...)
		if !j.StopAt.IsZero() {
			ev = append(ev, statusEvent{StatusStopping, ReasonUserStopped, j.StopAt})
		}
		return ev
	}
	for _, p := range pre {
		if !p.At.After(ended) {
			ev = append(ev, p)
		}
	}
	if reason != ReasonSucceeded {
		at := ended
		if !j.StopAt.IsZero() && j.StopAt.Before(ended) {
			at = j.StopAt
		}
		ev = append(ev, statusEvent{StatusStopping, reason, at})
	}
	return append(ev, statusEvent{StatusCompleted, reason, ended})
}

// jobView is a job's state at one instant.
type jobView struct {
	history     []statusEvent // statuses reached by now, oldest first
	latest      statusEvent
	completed   bool
	completedAt time.Time
	startedAt   time.Time // run start (Started); zero before
	execStart   time.Time // zero before Executing
	execEnd     time.Time // end of the run (Stopping or Completed); zero while the end is unknown
	endsAt      time.Time // scheduled Completed (future included)
}

func (j *jobRecord) view(now time.Time) jobView {
	var v jobView
	all := j.schedule()
	for i, e := range all {
		if e.Status == StatusCompleted {
			v.endsAt = e.At
		}
		if e.Status == StatusExecuting && i+1 < len(all) {
			v.execEnd = all[i+1].At
		}
		if e.At.After(now) {
			continue
		}
		v.history = append(v.history, e)
		switch e.Status {
		case StatusStarted:
			v.startedAt = e.At
		case StatusExecuting:
			v.execStart = e.At
		case StatusCompleted:
			v.completed, v.completedAt = true, e.At
		}
	}
	if v.execStart.IsZero() {
		v.execEnd = time.Time{}
	}
	v.latest = v.history[len(v.history)-1]
	return v
}

// live reports whether the run is in progress (directory-contents and tail answer), and how far along it
// is (0..1) for the growing files.
func (v jobView) live(now time.Time) (progress float64, ok bool) {
	if v.startedAt.IsZero() || v.completed {
		return 0, false
	}
	if v.execStart.IsZero() || !v.execEnd.After(v.execStart) {
		return 0, true
	}
	p := float64(now.Sub(v.execStart)) / float64(v.execEnd.Sub(v.execStart))
	return min(max(p, 0), 1), true
}

// CompleteJob moves a job that has not completed yet to Completed now (through Stopping if it was set to
// fail), publishing its outputs.
func (e *Emulator) CompleteJob(id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	j, ok := e.st.jobs[id]
	if !ok || j.Deleted {
		return fmt.Errorf("complete job %s: %w", id, ErrNotFound)
	}
	now := e.now()
	if j.view(now).completed {
		return nil
	}
	nj := *j
	if nj.Submitted.IsZero() {
		nj.Submitted = now
		nj.Lifecycle = Lifecycle{}
	}
	nj.CompleteAt = now
	return e.commitLocked(record{Job: &nj})
}
