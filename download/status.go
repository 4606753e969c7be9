package download

import (
	"cmp"
	"slices"
	"time"
)

// Status is a snapshot of the automatic downloads, for .rescalefs/status and `rescalefs status`.
type Status struct {
	Dir      string    `json:"dir"`
	Query    string    `json:"query,omitempty"`
	LastPoll time.Time `json:"lastPoll,omitzero"` // the last successful listing of jobs
	// Error is why the last listing of jobs failed (an unauthorized key, the platform unreachable);
	// "" when it worked.
	Error string      `json:"error,omitempty"`
	Jobs  []JobStatus `json:"jobs"`
}

// JobStatus is one job's download. Jobs not downloaded (running, or completed before MaxJobAge) are
// not listed; of those done, only the most recent maxDoneShown.
type JobStatus struct {
	ID          string    `json:"id"`
	State       string    `json:"state"` // queued, downloading, done, failed
	Succeeded   bool      `json:"succeeded"`
	CompletedAt time.Time `json:"completedAt,omitzero"`
	// Files and bytes of the matching outputs, as of the current or last attempt; done counts the files
	// that were already complete.
	FilesTotal int   `json:"filesTotal"`
	FilesDone  int   `json:"filesDone"`
	BytesTotal int64 `json:"bytesTotal"`
	BytesDone  int64 `json:"bytesDone"`
	// FilesSkipped counts outputs left out because their names could not be made safe (logged).
	FilesSkipped int            `json:"filesSkipped,omitempty"`
	Rate         float64        `json:"rate"` // bytes/s fetched over the last few seconds
	Current      []FileProgress `json:"current,omitempty"`
	Errors       []string       `json:"errors,omitempty"` // the latest first, at most maxErrors
	Attempts     int            `json:"attempts,omitempty"`
	NextTry      time.Time      `json:"nextTry,omitzero"`
}

// FileProgress is one file downloading now.
type FileProgress struct {
	Path string `json:"path"` // relative to the job's folder
	Size int64  `json:"size"`
	Done int64  `json:"done"`
}

const (
	maxErrors    = 8
	maxDoneShown = 20
	// rateWindow is how far back the rate looks.
	rateWindow = 5 * time.Second
)

// progress is a job's counters. Its fields are protected by Downloader.mu (as every job field).
type progress struct {
	filesTotal, filesDone, filesSkipped int
	bytesTotal, bytesDone               int64
	current                             map[string]*FileProgress
	errs                                []string
	rate                                rateMeter
}

func (p *progress) start(now time.Time) {
	*p = progress{current: map[string]*FileProgress{}, errs: p.errs}
	p.rate.reset(now)
}

func (p *progress) finish() { clear(p.current) }

func (p *progress) addError(msg string) {
	p.errs = append([]string{msg}, p.errs...)
	if len(p.errs) > maxErrors {
		p.errs = p.errs[:maxErrors]
	}
}

// rateMeter computes a recent rate from samples of a running total, taken at most every
// rateWindow/5, so it costs nothing per write.
type rateMeter struct {
	total   int64
	samples []rateSample // oldest first, within rateWindow of the newest
}

type rateSample struct {
	at    time.Time
	total int64
}

func (m *rateMeter) reset(now time.Time) {
	m.total = 0
	m.samples = append(m.samples[:0], rateSample{at: now})
}

func (m *rateMeter) add(n int64, now time.Time) {
	m.total += n
	if len(m.samples) == 0 || now.Sub(m.samples[len(m.samples)-1].at) >= rateWindow/5 {
		m.samples = append(m.samples, rateSample{at: now, total: m.total})
	}
	for len(m.samples) > 2 && now.Sub(m.samples[1].at) > rateWindow {
		m.samples = m.samples[1:]
	}
}

func (m *rateMeter) rate(now time.Time) float64 {
	if len(m.samples) == 0 {
		return 0
	}
	s := m.samples[0]
	el := now.Sub(s.at).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(m.total-s.total) / el
}

// Totals are the automatic downloads' counters since New, for --metrics: cumulative, where Snapshot
// lists only the latest jobs done, and cheap to read at every scrape.
type Totals struct {
	// Jobs by state now (running and too-old jobs, not downloaded, are not counted).
	Queued, Downloading, Failed int
	JobsDone                    int64 // attempts that left every matching output in Dir (found already there included)
	Failures                    int64 // attempts that failed; each is retried with backoff
	Files                       int64 // files downloaded into Dir (not those found already complete)
	// Bytes fetched into Dir, as written: a file that then fails its sha512 check counts too, and again
	// when it is fetched once more.
	Bytes int64
}

// Totals returns the counters since New and the jobs in each state now.
func (d *Downloader) Totals() Totals {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.totals
	for _, j := range d.jobs {
		switch j.state {
		case stateQueued:
			t.Queued++
		case stateActive:
			t.Downloading++
		case stateFailed:
			t.Failed++
		}
	}
	return t
}

// Snapshot returns the current state of the downloads: jobs downloading, queued and failed, newest
// completion first, then the most recently finished ones.
func (d *Downloader) Snapshot() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	s := Status{Dir: d.opts.Dir, Query: d.opts.Query, LastPoll: d.lastPoll, Error: d.pollErr, Jobs: []JobStatus{}}
	var done []*job
	for _, j := range d.jobs {
		switch j.state {
		case stateRunning, stateTooOld:
			continue
		case stateDone:
			done = append(done, j)
			continue
		}
		s.Jobs = append(s.Jobs, jobStatusLocked(j, now))
	}
	slices.SortFunc(s.Jobs, func(a, b JobStatus) int {
		if c := b.CompletedAt.Compare(a.CompletedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	slices.SortFunc(done, func(a, b *job) int {
		if c := b.lastFinished.Compare(a.lastFinished); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	for _, j := range done[:min(len(done), maxDoneShown)] {
		s.Jobs = append(s.Jobs, jobStatusLocked(j, now))
	}
	return s
}

func jobStatusLocked(j *job, now time.Time) JobStatus {
	p := &j.progress
	js := JobStatus{ID: j.id, State: j.state.String(), Succeeded: j.succeeded, CompletedAt: j.completedAt,
		FilesTotal: p.filesTotal, FilesDone: p.filesDone, BytesTotal: p.bytesTotal, BytesDone: p.bytesDone,
		FilesSkipped: p.filesSkipped, Errors: slices.Clone(p.errs), Attempts: j.attempts}
	if j.state == stateActive {
		js.Rate = p.rate.rate(now)
	}
	if j.state == stateFailed {
		js.NextTry = j.nextTry
	}
	for _, f := range p.current {
		js.Current = append(js.Current, *f)
	}
	slices.SortFunc(js.Current, func(a, b FileProgress) int { return cmp.Compare(a.Path, b.Path) })
	return js
}
