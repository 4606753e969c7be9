package fs

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// jobsModel is what the mount knows of the platform's jobs: the last jobs list, each job's status
// history, and which names the jobs/, completed/ and by-name/ folders show. It is FUSE-free: the poller
// feeds it, the nodes read snapshots of it, and the table tests drive it directly.
type jobsModel struct {
	mu      sync.Mutex // protects every field below; never held across a platform call or a Notify
	loaded  bool       // a jobs list has been applied at least once
	jobs    map[string]*jobRec
	missing map[string]time.Time // ids the platform said do not exist, believed until the time given
	trees   map[string]*jobTree  // file trees, per job id
	lru     treeLRU              // final trees, most recently used first (treelru.go)
}

// jobRec is one job. statuses is nil until fetched; statusFor is the list status it was fetched for,
// so a change of the list's jobStatus (the cheap signal) tells when to fetch the history again.
type jobRec struct {
	job       remote.Job
	listed    bool // in the last jobs list (a job found by GetJob alone is not listed in jobs/)
	statuses  remote.Statuses
	statusFor string
}

// jobInfo is a snapshot of one job for the nodes.
type jobInfo struct {
	ID, Name, Owner string
	Status          string    // the latest status
	Reason          string    // its statusReason
	Inserted        time.Time // dateInserted
	StatusDate      time.Time // the latest status date: the job folder's mtime
	CompletedAt     time.Time // the Completed status date; zero while running
	Completed       bool
	Succeeded       bool
	HaveStatuses    bool // the status history is known (else dates fall back to dateInserted)
	Listed          bool
}

func newJobsModel() *jobsModel {
	return &jobsModel{jobs: map[string]*jobRec{}, missing: map[string]time.Time{}, trees: map[string]*jobTree{}}
}

func (r *jobRec) info() jobInfo {
	j := jobInfo{ID: r.job.ID, Name: r.job.Name, Owner: r.job.Owner, Inserted: r.job.DateInserted.Time,
		Listed: r.listed}
	j.Status = r.job.JobStatus.Content
	j.StatusDate = j.Inserted
	j.Completed = j.Status == remote.StatusCompleted
	if r.statuses != nil {
		j.HaveStatuses = true
		if l := r.statuses.Latest(); l.Status != "" {
			j.Status, j.Reason = l.Status, l.StatusReason
			if !l.StatusDate.IsZero() {
				j.StatusDate = l.StatusDate.Time
			}
		}
		j.Completed = j.Completed || r.statuses.Completed()
		j.Succeeded = r.statuses.Succeeded()
		for _, s := range r.statuses {
			if s.Status == remote.StatusCompleted {
				j.CompletedAt = s.StatusDate.Time
				break
			}
		}
	}
	if j.Completed && j.CompletedAt.IsZero() {
		j.CompletedAt = j.StatusDate
	}
	return j
}

// applyList replaces the jobs list. Jobs no longer listed are forgotten (unless only ever found by id),
// and the ids whose status history must be (re)fetched are returned: new jobs and jobs whose list status
// changed. Invalid ids (anything but letters, digits, '_' and '-') are dropped and returned apart, to be
// logged.
func (m *jobsModel) applyList(list []remote.Job) (invalid []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool, len(list))
	for _, j := range list {
		if !validJobID(j.ID) {
			invalid = append(invalid, j.ID)
			continue
		}
		if seen[j.ID] {
			continue // a page boundary moved under us: the first copy wins
		}
		seen[j.ID] = true
		delete(m.missing, j.ID)
		r := m.jobs[j.ID]
		if r == nil {
			r = &jobRec{}
			m.jobs[j.ID] = r
		}
		r.job, r.listed = j, true
	}
	for id, r := range m.jobs {
		if !seen[id] && r.listed {
			delete(m.jobs, id)
			delete(m.trees, id)
		}
	}
	m.loaded = true
	return invalid
}

// needStatuses says whether the job's status history must be (re)fetched: never fetched, or fetched
// for another list status than the list's.
func (r *jobRec) needStatuses() bool {
	return r.statuses == nil || r.statusFor != r.job.JobStatus.Content
}

// staleStatuses returns the listed jobs whose status history must be (re)fetched (needStatuses), sorted.
func (m *jobsModel) staleStatuses() []string {
	m.mu.Lock()
	var out []string
	for id, r := range m.jobs {
		if r.listed && r.needStatuses() {
			out = append(out, id)
		}
	}
	m.mu.Unlock()
	slices.Sort(out)
	return out
}

// setStatuses records a job's status history, fetched while its list status was forStatus.
func (m *jobsModel) setStatuses(id string, st remote.Statuses, forStatus string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.jobs[id]
	if r == nil {
		return // forgotten meanwhile
	}
	if st == nil {
		st = remote.Statuses{}
	}
	r.statuses, r.statusFor = st, forStatus
}

// listStatus is the job's status as the jobs list gave it (the history is fetched for it).
func (m *jobsModel) listStatus(id string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.jobs[id]
	if r == nil {
		return "", false
	}
	return r.job.JobStatus.Content, true
}

// addFound records a job the jobs list did not show but GetJob found (a lookup by id).
func (m *jobsModel) addFound(j remote.Job, st remote.Statuses) jobInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.missing, j.ID)
	r := m.jobs[j.ID]
	if r == nil {
		r = &jobRec{job: j}
		m.jobs[j.ID] = r
	}
	if st != nil {
		r.statuses = st
		if r.job.JobStatus.Content == "" {
			r.job.JobStatus.Content = st.Latest().Status
		}
		r.statusFor = r.job.JobStatus.Content
	}
	return r.info()
}

// setMissing remembers, until the given time, that the platform has no job id.
func (m *jobsModel) setMissing(id string, until time.Time) {
	m.mu.Lock()
	if len(m.missing) >= maxMissing { // typos are many and cheap to forget
		m.missing = map[string]time.Time{}
	}
	m.missing[id] = until
	m.mu.Unlock()
}

// maxMissing bounds the remembered missing ids.
const maxMissing = 10000

// isMissing says whether id is known not to exist at now.
func (m *jobsModel) isMissing(id string, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.missing[id]
	if ok && now.After(until) {
		delete(m.missing, id)
		return false
	}
	return ok
}

func (m *jobsModel) isLoaded() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loaded
}

// get returns a job's snapshot.
func (m *jobsModel) get(id string) (jobInfo, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.jobs[id]
	if r == nil {
		return jobInfo{}, false
	}
	return r.info(), true
}

// list returns the listed jobs, sorted by id.
func (m *jobsModel) list() []jobInfo {
	m.mu.Lock()
	out := make([]jobInfo, 0, len(m.jobs))
	for _, r := range m.jobs {
		if r.listed {
			out = append(out, r.info())
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b jobInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// completedJobs returns the completed jobs that completed within maxAge of now (0: any age), newest
// first by completion date, ties by id.
func completedJobs(all []jobInfo, maxAge time.Duration, now time.Time) []jobInfo {
	var out []jobInfo
	for _, j := range all {
		if !j.Completed {
			continue
		}
		if maxAge > 0 && j.CompletedAt.Before(now.Add(-maxAge)) {
			continue
		}
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b jobInfo) int {
		if c := b.CompletedAt.Compare(a.CompletedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// failed says whether a job completed without success (failed, or stopped). Only once its status
// history is known: the list's "Completed" alone does not tell the outcome.
func (j jobInfo) failed() bool { return j.Completed && j.HaveStatuses && !j.Succeeded }

// failedJobs are the completed jobs (as completedJobs) that did not succeed.
func failedJobs(all []jobInfo, maxAge time.Duration, now time.Time) []jobInfo {
	out := completedJobs(all, maxAge, now)
	return slices.DeleteFunc(out, func(j jobInfo) bool { return !j.failed() })
}

// views are the names each dynamic folder shows, with a signature per name that changes when what the
// name shows changes. Comparing two views tells the poller which kernel entries to invalidate.
type views struct {
	jobs      map[string]string // id -> status and status date
	completed map[string]string // id -> completion date
	failed    map[string]string // id -> completion date
	byName    map[string]string // "name (id)" -> id
}

func makeViews(all []jobInfo, maxAge time.Duration, now time.Time) views {
	v := views{jobs: map[string]string{}, completed: map[string]string{}, failed: map[string]string{},
		byName: map[string]string{}}
	for _, j := range all {
		v.jobs[j.ID] = j.Status + "@" + j.StatusDate.UTC().Format(time.RFC3339Nano)
		v.byName[byNameEntry(j.Name, j.ID)] = j.ID
	}
	for _, j := range completedJobs(all, maxAge, now) {
		v.completed[j.ID] = j.CompletedAt.UTC().Format(time.RFC3339Nano)
		if j.failed() {
			v.failed[j.ID] = v.completed[j.ID]
		}
	}
	return v
}

// changed lists the names whose entry appeared, vanished or changed between a and b, sorted.
func changed(a, b map[string]string) []string {
	var out []string
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// byNameIndex returns the by-name entries, sorted by name, and the index name -> id.
func byNameIndex(all []jobInfo) ([]string, map[string]string) {
	idx := make(map[string]string, len(all))
	names := make([]string, 0, len(all))
	for _, j := range all {
		n := byNameEntry(j.Name, j.ID)
		idx[n] = j.ID
		names = append(names, n)
	}
	slices.Sort(names)
	return names, idx
}
