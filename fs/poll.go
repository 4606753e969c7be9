package fs

import (
	"sync"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
)

// The poller refreshes the jobs list every Poll, fetches the status history of every job whose status
// changed, and then tells the kernel which cached entries are now wrong, so `ls completed/` shows a job
// that just completed without waiting for any timeout, and without remounting. A list less than Poll
// old that a listing fetched (the mount's first `ls jobs/`) serves a round as well as its own would:
// the platform limits requests, and on a WAN a large account's list takes seconds.
//
// It is the only caller of Notify*: never from inside a handler, never under a lock of ours (the
// kernel takes the directory's lock to invalidate an entry, and a handler waiting on us may hold it).

// poller runs until stop is closed.
type poller struct {
	f    *fsys
	last views // what the kernel may have been shown, as of the previous round
	stop chan struct{}
	done chan struct{}
}

func (f *fsys) startPoller() *poller {
	p := &poller{f: f, last: makeViews(nil, 0, time.Time{}), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *poller) run() {
	defer close(p.done)
	next := time.Duration(0) // the first round at once: the mount is most likely listed right away
	for {
		// On the mount's clock: a test's hand-moved clock decides when the next round comes (and
		// sees, by its waiter, that the round before is done).
		select {
		case <-p.stop:
			return
		case <-p.f.opts.Clock.After(next):
		}
		next = p.round()
	}
}

// nextRound is how long the poller waits after a round that relied on a list sent at sent, fetched
// by the round itself or not. After its own list, a whole interval, as ever. After a list someone else
// fetched (the first listing of the mount, most often), only until that list is poll old: waiting a
// whole interval from now would let a change made just after it was sent go unseen for nearly two
// intervals. Never negative; 0 means at once.
func nextRound(poll time.Duration, sent time.Time, fetched bool, now time.Time) time.Duration {
	if fetched {
		return poll
	}
	return max(sent.Add(poll).Sub(now), 0)
}

// halt stops the poller and waits for a round in progress.
func (p *poller) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// statusParallel bounds the status fetches of one round.
const statusParallel = 8

// round is one refresh: list, statuses, then notifications; it returns the wait until the next. Its
// list is less than an interval old, and not necessarily its own: a list fetched meanwhile (a
// listing's, at mount) serves it, so a mount listed at once costs one list, not two.
func (p *poller) round() time.Duration {
	f := p.f
	poll := f.opts.Poll
	sent, fetched, err := f.freshList(f.ctx, poll)
	if err != nil {
		if f.ctx.Err() == nil {
			f.logErr("refresh the jobs list", err)
		}
		return poll
	}
	// Which histories are missing or stale, the model says: a list the round took as it was brings no
	// answer of its own, and a lookup may have fetched some meanwhile.
	f.fetchStatuses(f.model.staleStatuses())

	now := makeViews(f.model.list(), f.opts.MaxJobAge, f.now())
	jobs := changed(p.last.jobs, now.jobs)
	completed := changed(p.last.completed, now.completed)
	failed := changed(p.last.failed, now.failed)
	byName := changed(p.last.byName, now.byName)
	for _, id := range jobs {
		// Its status changed: a running job's listing is refetched (its outputs appear on completion).
		// A job new to the poller has no stale listing to drop (one fetched meanwhile is current).
		if _, known := p.last.jobs[id]; known {
			f.model.invalidateTree(id)
		}
	}
	p.last = now
	next := nextRound(poll, sent, fetched, f.now())
	if f.ctx.Err() != nil {
		return next
	}
	notifyNames(f.jobsDir, jobs, true)
	notifyNames(f.completedDir, completed, false)
	notifyNames(f.failedDir, failed, false)
	notifyNames(f.byNameDir, byName, false)
	return next
}

// notifyNames invalidates the kernel's entries for names in dir (new names may be cached as missing,
// gone ones as present), and with content also the attributes and page cache of the child inodes
// go-fuse knows (a job folder's mtime is its status date). Errors are expected and ignored: ENOENT
// when the kernel had nothing cached, ENOSYS before the mount is up.
func notifyNames(dir *fusefs.Inode, names []string, content bool) {
	if dir == nil || len(names) == 0 {
		return
	}
	for _, n := range names {
		dir.NotifyEntry(n)
		if content {
			if ch := dir.GetChild(n); ch != nil {
				ch.NotifyContent(0, 0)
				// A job folder that switched from its live files to its outputs: the names the
				// kernel knows in it now stand for other inodes (a process with its working
				// directory in it still reaches them through this inode).
				for name := range ch.Children() {
					ch.NotifyEntry(name)
				}
			}
		}
	}
	dir.NotifyContent(0, 0) // the folder's own attributes (nlink)
}

// fetchStatuses fetches the status histories of ids, statusParallel at a time, under the mount's
// context. A failure leaves the job without one; the next round tries again.
func (f *fsys) fetchStatuses(ids []string) {
	sem := make(chan struct{}, statusParallel)
	var wg sync.WaitGroup
	for _, id := range ids {
		listStatus, ok := f.model.listStatus(id)
		if !ok {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			st, err := f.client.JobStatuses(f.ctx, id)
			if err != nil {
				if f.ctx.Err() == nil {
					f.logErr("statuses of job "+id, err)
				}
				return
			}
			f.model.setStatuses(id, st, listStatus)
		}()
	}
	wg.Wait()
}
