package upload

import (
	"time"
)

// State is where an upload stands.
type State string

const (
	StateQueued    State = "queued"    // waiting for a slot (or for its first attempt)
	StateUploading State = "uploading" // bytes are moving
	StateRetrying  State = "retrying"  // the last attempt failed; another comes after a backoff
	StateFailed    State = "failed"    // attempts keep failing (or cannot succeed as is); still retried, slowly
	StateDone      State = "done"      // the platform confirmed the file; staging copy removed
	StateDamaged   State = "damaged"   // journal or staging data unreadable or changed: kept in damaged/
	// StateRejected: the platform refused the file with an answer a retry would not change (a 4xx such
	// as 400 for a name it cannot store): kept, shown, never retried; Cancel removes it.
	StateRejected State = "rejected"
)

func validState(s State) bool {
	switch s {
	case StateQueued, StateUploading, StateRetrying, StateFailed, StateDone, StateRejected:
		return true
	}
	return false
}

// Status is one upload as `rescalefs status` and .rescalefs/status show it.
type Status struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Size      int64     `json:"size"`
	Done      int64     `json:"bytesDone"`
	State     State     `json:"state"`
	Error     string    `json:"error,omitempty"`   // the reason of the last failure (failed, retrying, damaged)
	Rate      float64   `json:"rate"`              // bytes/s over the last few seconds
	Attempts  int       `json:"attempts"`          // failed attempts so far
	NextTry   time.Time `json:"nextTry,omitzero"`  // retrying/failed: when the next attempt starts
	Path      string    `json:"path,omitempty"`    // the data file while pending: the fs layer serves reads from it
	FileID    string    `json:"fileId,omitempty"`  // done: the published file
	Created   time.Time `json:"created"`           // when it was enqueued
	Finished  time.Time `json:"finished,omitzero"` // done: when the platform confirmed it
	Multipart bool      `json:"multipart"`
}

// rateWindow is how far back Rate looks.
const rateWindow = 5 * time.Second

// meter turns samples of bytes done into a rate.
type meter struct {
	samples []sample
}

type sample struct {
	t time.Time
	b int64
}

// observe records done at now (at most every 100ms) and returns the rate over the window.
func (m *meter) observe(now time.Time, done int64) float64 {
	if n := len(m.samples); n == 0 || now.Sub(m.samples[n-1].t) >= 100*time.Millisecond {
		m.samples = append(m.samples, sample{now, done})
	} else {
		m.samples[n-1].b = done // keep the newest value without adding a sample
	}
	i := 0
	for i < len(m.samples)-2 && now.Sub(m.samples[i+1].t) >= rateWindow {
		i++
	}
	m.samples = m.samples[i:]
	first, last := m.samples[0], m.samples[len(m.samples)-1]
	dt := last.t.Sub(first.t).Seconds()
	if dt <= 0 || last.b < first.b {
		return 0
	}
	return float64(last.b-first.b) / dt
}
