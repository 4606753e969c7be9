package fs

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// jobTree holds one job's file tree. A completed job's listing never changes, so once fetched after
// completion it is final and kept for the life of the mount; a running job's is refetched after ttl:
// liveInterval for a live working directory (live.go), liveTTL for the outputs of a job not yet
// started.
type jobTree struct {
	mu      sync.Mutex // protects the fields below; held only briefly, never across a platform call
	root    *node
	final   bool // fetched once the job had completed
	fetched time.Time
	ttl     time.Duration
	gen     uint64 // bumped by invalidate: a fetch started before stores nothing
	call    *flight[*node]

	runID string               // the live run last listed ("" = ask JobRuns)
	live  map[string]*liveFile // the live files seen, by run id and path; dropped once final

	// elem and counted are guarded by jobsModel.mu: the tree's place in the LRU of final listings
	// and the files it counts there (treelru.go).
	elem    *list.Element
	counted int
}

// treeFor returns the job's jobTree, creating it.
func (m *jobsModel) treeFor(id string) *jobTree {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.trees[id]
	if t == nil {
		t = &jobTree{}
		m.trees[id] = t
	}
	return t
}

// invalidateTree makes the next access refetch a job's listing (it has just completed or changed).
func (m *jobsModel) invalidateTree(id string) {
	m.mu.Lock()
	t := m.trees[id]
	m.mu.Unlock()
	if t == nil {
		return
	}
	t.mu.Lock()
	if !t.final { // a completed job's listing never goes stale: Completed is terminal
		t.gen++
		t.root = nil
	}
	t.mu.Unlock()
}

// jobFiles returns a job's tree and whether it is final (immutable for the life of the mount). A job
// whose run is in progress shows its live working directory (one directory-contents per liveInterval,
// live.go); any other job its outputs (one JobFiles call, page_size 1000, lists the whole job).
// Either way one fetch serves every lookup that asks meanwhile. A failed refetch of a running job
// serves the previous tree rather than an error.
//
// Lock order: jobTree.mu, then jobsModel.mu (model.get under it).
func (f *fsys) jobFiles(ctx context.Context, id string) (*node, bool, error) {
	t := f.model.treeFor(id)
	t.mu.Lock()
	if t.root != nil && (t.final || f.now().Sub(t.fetched) < t.ttl) {
		root, final := t.root, t.final
		t.mu.Unlock()
		if final {
			f.model.touchTree(t)
		}
		return root, final, nil
	}
	c := t.call
	if c == nil {
		info, _ := f.model.get(id)
		completed, gen := info.Completed, t.gen
		live := !completed && runActive(info.Status)
		ttl := f.liveTTL
		c = startFlight(&f.calls, func(ctx context.Context) (*node, error) {
			if live {
				root, err := f.liveTree(ctx, t, id)
				if err == nil || !isNotFound(err) {
					ttl = liveInterval
					return root, err
				}
				// No run in progress any more: the outputs, as far as they are uploaded yet. Not
				// asked again before liveInterval, the poller invalidating it when the job completes.
				ttl = liveInterval
			}
			return f.completedTree(ctx, id)
		}, func(root *node, err error) {
			var drop []*jobTree
			t.mu.Lock()
			if err == nil && t.gen == gen {
				t.root, t.final, t.fetched, t.ttl = root, completed, f.now(), ttl
				if completed {
					t.runID, t.live = "", nil // open live files keep their own state
					drop = f.model.keepTree(t, root.files)
				}
			}
			t.call = nil
			t.mu.Unlock()
			dropTrees(drop)
		})
		t.call = c
	}
	stale := t.root
	t.mu.Unlock()

	root, err := c.wait(ctx)
	if err != nil {
		if stale != nil && ctx.Err() == nil {
			f.logErr("refresh listing of job "+id+" (serving the previous one)", err)
			return stale, false, nil
		}
		return nil, false, err
	}
	t.mu.Lock()
	final := t.final && t.root == root
	t.mu.Unlock()
	return root, final, nil
}

// logNotes logs each changed name of a job once per mount (a running job's listing is rebuilt often).
func (f *fsys) logNotes(jobID string, notes []treeNote) {
	for _, n := range notes {
		if _, dup := f.noted.LoadOrStore(jobID+"\x00"+n.FileID+"\x00"+n.Reason, true); dup {
			continue
		}
		f.log.Warn("renamed an output file", "job", jobID, "file", n.FileID, "reason", n.Reason,
			"original", n.Original, "shown_as", n.Name)
	}
}

// jobStatuses makes sure a job's status history is known (the poller fetches it for every job whose
// status changed; this is for a job looked at before the poller got to it).
func (f *fsys) jobStatuses(ctx context.Context, id string) (jobInfo, error) {
	info, ok := f.model.get(id)
	if ok && info.HaveStatuses {
		return info, nil
	}
	listStatus := info.Status
	got, err := f.jobCalls.do(ctx, &f.calls, "statuses\x00"+id, func(ctx context.Context) (jobInfo, error) {
		st, err := f.client.JobStatuses(ctx, id)
		if err != nil {
			return jobInfo{}, err
		}
		f.model.setStatuses(id, st, listStatus)
		info, _ := f.model.get(id)
		return info, nil
	})
	if err != nil {
		return info, err
	}
	return got, nil
}

// findJob returns a job for a lookup in jobs/: from the model, else (a job newer than the last poll, or
// not in the list) from the platform. A missing job is remembered for a poll interval, so repeated
// lookups of a typo do not each cost a request.
func (f *fsys) findJob(ctx context.Context, id string) (jobInfo, error) {
	if !validJobID(id) {
		return jobInfo{}, remote.ErrNotFound
	}
	if info, ok := f.model.get(id); ok {
		return info, nil
	}
	if f.model.isMissing(id, f.now()) {
		return jobInfo{}, remote.ErrNotFound
	}
	if !f.model.isLoaded() {
		if err := f.loadJobs(ctx); err == nil {
			if info, ok := f.model.get(id); ok {
				return info, nil
			}
		}
	}
	return f.jobCalls.do(ctx, &f.calls, "find\x00"+id, func(ctx context.Context) (jobInfo, error) {
		j, err := f.client.GetJob(ctx, id)
		if err == nil && j.ID != id {
			err = remote.ErrNotFound // a platform answering with another job: not this one
		}
		if err != nil {
			if isNotFound(err) {
				f.model.setMissing(id, f.now().Add(f.opts.Poll))
			}
			return jobInfo{}, err
		}
		st, err := f.client.JobStatuses(ctx, id)
		if err != nil {
			return jobInfo{}, err
		}
		return f.model.addFound(j, st), nil
	})
}

// loadJobs makes sure the jobs list has been fetched once; concurrent callers share one fetch.
func (f *fsys) loadJobs(ctx context.Context) error {
	if f.model.isLoaded() {
		return nil
	}
	_, err := f.refreshList().wait(ctx)
	return err
}

// freshList makes sure the model holds a jobs list sent less than maxAge ago, and fetches one only
// when it does not: a fetch in flight is joined, and a list fetched that recently (the one a listing
// made just before the poller's round) is taken as it is, since asking again would cost a request to
// learn the same. It returns when the list it relies on was sent, and whether it started the fetch.
//
// Age counts from the request, not its answer: a change made while a long list was being paged
// through may be missing from it, so the list is only as fresh as its request.
func (f *fsys) freshList(ctx context.Context, maxAge time.Duration) (sent time.Time, fetched bool, err error) {
	f.listMu.Lock()
	if f.listCall == nil && !f.listSent.IsZero() && f.now().Sub(f.listSent) < maxAge {
		sent = f.listSent
		f.listMu.Unlock()
		return sent, false, nil
	}
	fetched = f.listCall == nil
	c := f.refreshListLocked()
	f.listMu.Unlock()
	sent, err = c.wait(ctx)
	return sent, fetched, err
}

// refreshList starts (or joins) one fetch of the jobs list and applies it to the model; its value is
// when the list was sent. It never notifies the kernel: handlers wait on it, and a notification from
// under a waiting handler can deadlock on the directory's lock. The poller notifies after it returns.
func (f *fsys) refreshList() *flight[time.Time] {
	f.listMu.Lock()
	defer f.listMu.Unlock()
	return f.refreshListLocked()
}

// refreshListLocked is refreshList with listMu held.
func (f *fsys) refreshListLocked() *flight[time.Time] {
	if f.listCall != nil {
		f.listCall.callers++
		return f.listCall
	}
	f.listCall = startFlight(&f.calls, func(ctx context.Context) (time.Time, error) {
		sent := f.now()
		list, err := f.client.ListJobs(ctx, nil)
		if err != nil {
			return time.Time{}, err
		}
		invalid := f.model.applyList(list)
		for _, id := range invalid {
			if _, dup := f.noted.LoadOrStore("badid\x00"+id, true); !dup {
				f.log.Warn("ignoring a job with an unusable id", "id", id)
			}
		}
		return sent, nil
	}, func(sent time.Time, err error) {
		f.listMu.Lock()
		if err == nil {
			f.listSent = sent
		}
		f.listCall = nil
		f.listMu.Unlock()
	})
	f.listCall.callers = 1
	return f.listCall
}

// listCallers returns how many callers the jobs list in flight has (0: none in flight), so a test can
// hold the platform's answer until the poller has joined a listing's list.
func (f *fsys) listCallers() int {
	f.listMu.Lock()
	defer f.listMu.Unlock()
	if f.listCall != nil {
		return f.listCall.callers
	}
	return 0
}
