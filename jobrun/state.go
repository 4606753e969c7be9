// Package jobrun submits jobs to Rescale and waits for them the way a CI pipeline needs: rescale-cli job
// scripts, inputs reused by checksum or uploaded through the resumable engine, a waiter with an explicit
// life cycle, and an outcome read from the job's log rather than its status name. It knows nothing of
// FUSE; cmd/rescalefs wires it to flags and signals.
package jobrun

import (
	"fmt"

	"github.com/rescalefs/rescalefs/remote"
)

// Phase is where a job being waited on stands, as the waiter sees it.
type Phase int

const (
	PhaseWaiting    Phase = iota // created or submitted, not executing yet (Pending, Queued, Started, Validated...)
	PhaseRunning                 // Executing: the live log can be followed
	PhaseStopping                // the platform is stopping it (a run failed, or someone stopped it)
	PhaseCancelling              // we asked for the stop (--timeout, a signal): waiting for it to end
	PhaseDone                    // Completed: the outcome can be read
)

func (p Phase) String() string {
	switch p {
	case PhaseWaiting:
		return "waiting"
	case PhaseRunning:
		return "running"
	case PhaseStopping:
		return "stopping"
	case PhaseCancelling:
		return "cancelling"
	case PhaseDone:
		return "done"
	}
	return fmt.Sprintf("Phase(%d)", int(p))
}

// Event is what moves a job: a status seen on the platform, or a decision of the waiter.
type Event int

const (
	EvQueued    Event = iota // a status before Executing (Pending, Queued, Started, Validated, Waiting for ...)
	EvExecuting              // status Executing
	EvStopping               // status Stopping
	EvCompleted              // status Completed
	EvTimeout                // --timeout passed: the waiter stops the job
	EvInterrupt              // SIGINT/SIGTERM: the waiter stops the job (unless --detach)
)

// Action is what the waiter must do on a transition.
type Action int

const (
	ActNone   Action = iota
	ActStop          // send a stop to the platform
	ActFinish        // read the outcome
)

type transition struct {
	to  Phase
	act Action
}

// transitions is the whole life cycle of a waited job in one place. A pair missing from the table
// leaves the phase unchanged with no action: a status seen again, or an older status arriving late
// (the platform's history is eventually consistent), never moves a job back.
var transitions = map[Phase]map[Event]transition{
	PhaseWaiting: {
		EvExecuting: {PhaseRunning, ActNone},
		EvStopping:  {PhaseStopping, ActNone},
		EvCompleted: {PhaseDone, ActFinish},
		EvTimeout:   {PhaseCancelling, ActStop},
		EvInterrupt: {PhaseCancelling, ActStop},
	},
	PhaseRunning: {
		EvStopping:  {PhaseStopping, ActNone},
		EvCompleted: {PhaseDone, ActFinish},
		EvTimeout:   {PhaseCancelling, ActStop},
		EvInterrupt: {PhaseCancelling, ActStop},
	},
	PhaseStopping: {
		EvCompleted: {PhaseDone, ActFinish},
		EvTimeout:   {PhaseCancelling, ActStop},
		EvInterrupt: {PhaseCancelling, ActStop},
	},
	PhaseCancelling: {
		EvCompleted: {PhaseDone, ActFinish},
	},
	PhaseDone: {},
}

// next is the transition of phase p on event ev.
func next(p Phase, ev Event) (Phase, Action) {
	if t, ok := transitions[p][ev]; ok {
		return t.to, t.act
	}
	return p, ActNone
}

// statusEvent maps a platform status to an event.
func statusEvent(status string) Event {
	switch status {
	case remote.StatusExecuting:
		return EvExecuting
	case remote.StatusStopping, "Force Stop":
		return EvStopping
	case remote.StatusCompleted:
		return EvCompleted
	}
	return EvQueued
}

// Cause says why a job we waited on was cancelled by us.
type Cause int

const (
	CauseNone      Cause = iota
	CauseTimeout         // --timeout
	CauseInterrupt       // SIGINT or SIGTERM
)

// Tracker is one job being waited on: its phase, the last status seen, and why we cancelled it. It is
// owned by one goroutine (the job's waiter) and not safe for concurrent use.
type Tracker struct {
	JobID  string
	Name   string
	phase  Phase
	status string // the last status seen
	cause  Cause
}

// NewTracker starts tracking a job that was created or submitted.
func NewTracker(jobID, name string) *Tracker {
	return &Tracker{JobID: jobID, Name: name, phase: PhaseWaiting}
}

func (t *Tracker) Phase() Phase   { return t.phase }
func (t *Tracker) Status() string { return t.status }
func (t *Tracker) Cause() Cause   { return t.cause }

// Observe takes the newest status of the job; changed reports a new status name (worth a line).
func (t *Tracker) Observe(status string) (changed bool, act Action) {
	changed = status != "" && status != t.status
	if changed {
		t.status = status
	}
	t.phase, act = next(t.phase, statusEvent(status))
	return changed, act
}

// Cancel records that the waiter gives up on the job for cause; the action says whether to send a stop.
func (t *Tracker) Cancel(cause Cause) Action {
	ev := EvTimeout
	if cause == CauseInterrupt {
		ev = EvInterrupt
	}
	p, act := next(t.phase, ev)
	if p != t.phase {
		t.cause = cause
	}
	t.phase = p
	return act
}
