package fs

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

func TestNextRound(t *testing.T) {
	const poll = 30 * time.Second
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name    string
		sent    time.Time
		fetched bool
		now     time.Time
		want    time.Duration
	}{
		{"its own list: a whole interval after the round", t0, true, t0.Add(5 * time.Second), poll},
		{"its own list, longer than an interval: still a whole one", t0, true, t0.Add(2 * poll), poll},
		{"a list taken: when it is an interval old", t0, false, t0.Add(10 * time.Second), 20 * time.Second},
		{"a list taken just now", t0, false, t0, poll},
		{"a list joined that took longer than an interval: at once", t0, false, t0.Add(poll + time.Second), 0},
		{"a list joined that took an interval exactly: at once", t0, false, t0.Add(poll), 0},
	} {
		if got := nextRound(poll, c.sent, c.fetched, c.now); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// staleStatuses, which a round fetches: the listed jobs never fetched or whose list status changed since;
// a job found by id alone (not listed) is not the poller's to refresh.
func TestStaleStatuses(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	m := newJobsModel()
	m.addFound(job("F9", "found", "Executing", t0), nil)
	m.applyList([]remote.Job{job("A1", "a", "Executing", t0), job("B2", "b", "Completed", t0)})
	if got := m.staleStatuses(); !slices.Equal(got, []string{"A1", "B2"}) {
		t.Fatalf("stale %v, want [A1 B2]", got)
	}
	m.setStatuses("A1", statuses("Executing", t0), "Executing")
	if got := m.staleStatuses(); !slices.Equal(got, []string{"B2"}) {
		t.Fatalf("stale %v after A1's fetch, want [B2]", got)
	}
	m.setStatuses("B2", statuses("Completed", t0), "Completed")
	if got := m.staleStatuses(); len(got) != 0 {
		t.Fatalf("stale %v after every fetch, want none", got)
	}
	// A1 completes: the list's status changes, its history is stale again.
	m.applyList([]remote.Job{job("A1", "a", "Completed", t0), job("B2", "b", "Completed", t0)})
	if got := m.staleStatuses(); !slices.Equal(got, []string{"A1"}) {
		t.Fatalf("stale %v after A1 completed, want [A1]", got)
	}
}

// pollEnv is a model over the emulator with a poller the test starts, on a clock the test moves.
type pollEnv struct {
	f     *fsys
	emu   *emulator.Emulator
	clock *testutil.Clock
	p     *poller
}

// newPollEnv is a model over emu (through client) polling every poll on a clock the test moves; the
// poller is not started.
func newPollEnv(t *testing.T, poll time.Duration, emu *emulator.Emulator, client *remote.Client) *pollEnv {
	clock := testutil.NewClock(time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC))
	e := &pollEnv{f: newFsys(Options{Poll: poll, Clock: clock}, client, nil), emu: emu, clock: clock}
	t.Cleanup(func() { // the mount's order (Mounted.stop)
		e.f.cancel()
		if e.p != nil {
			e.p.halt()
		}
		e.f.calls.close()
	})
	return e
}

// startPoller starts the poller (once).
func (e *pollEnv) startPoller() { e.p = e.f.startPoller() }

// waitRound waits for the poller to wait on the clock for its next round (the one before done) and
// returns how long it waits. The clock fires none before the test advances it.
func (e *pollEnv) waitRound(t *testing.T) time.Duration {
	t.Helper()
	var w []time.Duration
	testutil.Eventually(t, time.Minute, "the poller waiting for its next round", func() bool {
		w = e.clock.Waiters()
		return len(w) == 1
	})
	return w[0]
}

// listing is what `ls jobs/` asks of the model.
func (e *pollEnv) listing(t *testing.T) {
	t.Helper()
	if err := e.f.loadJobs(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// The poller's round takes a jobs list less than an interval old instead of asking again: at mount,
// a listing (`ls jobs/`) that comes right away lists the jobs, and the poller's first round, coming
// after it, used to send a list of its own, the same request a few milliseconds apart. Whichever
// comes first, the mount lists its jobs once, and the status histories are fetched once per job all
// the same (the round fetches what the model lacks). A list an interval old is not taken. The
// interval is an hour, so the poller makes exactly one round here; freshness is judged on the test's
// clock.
func TestPollerTakesFreshList(t *testing.T) {
	const poll = time.Hour
	for _, c := range []struct {
		name  string
		steps func(t *testing.T, e *pollEnv) // start the poller and wait for its first round, among others
		lists int64
	}{
		{"a listing, then the poller", func(t *testing.T, e *pollEnv) {
			e.listing(t)
			e.startPoller()
			e.waitRound(t)
		}, 1},
		{"the poller, then a listing", func(t *testing.T, e *pollEnv) {
			e.startPoller()
			e.waitRound(t)
			e.listing(t)
		}, 1},
		{"the poller joins a listing's list in flight", func(t *testing.T, e *pollEnv) {
			e.emu.SetFrozen(true)
			defer e.emu.SetFrozen(false)
			done := make(chan error, 1)
			go func() { done <- e.f.loadJobs(context.Background()) }()
			testutil.Eventually(t, time.Minute, "the listing's list held by the frozen platform", func() bool { return e.emu.Holding() > 0 })
			e.startPoller()
			testutil.Eventually(t, time.Minute, "the poller waiting on the same list", func() bool { return e.f.listCallers() >= 2 })
			e.emu.SetFrozen(false)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			e.waitRound(t)
		}, 1},
		{"a listing nearly an interval old: taken", func(t *testing.T, e *pollEnv) {
			e.listing(t)
			e.clock.Advance(poll - time.Second)
			e.startPoller()
			e.waitRound(t)
		}, 1},
		{"a listing an interval old: the poller lists", func(t *testing.T, e *pollEnv) {
			e.listing(t)
			e.clock.Advance(poll)
			e.startPoller()
			e.waitRound(t)
		}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			emu, client := newEmulatorClient(t, emulator.Faults{})
			const jobs = 3
			for i := range jobs {
				if _, err := emu.AddJob(emulator.JobSpec{Name: "j", Files: []emulator.FileSpec{{RelativePath: "a", Size: int64(10 + i)}}}); err != nil {
					t.Fatal(err)
				}
			}
			e := newPollEnv(t, poll, emu, client)
			c.steps(t, e)
			cn := emu.Counters()
			if got := cn.Requests[emulator.EndpointJobs]; got != c.lists {
				t.Errorf("jobs.list %d, want %d", got, c.lists)
			}
			if got := cn.Requests[emulator.EndpointStatuses]; got != jobs {
				t.Errorf("jobs.statuses %d, want %d (one per job)", got, jobs)
			}
			if got := len(e.f.model.list()); got != jobs {
				t.Errorf("%d jobs listed, want %d", got, jobs)
			}
			if stale := e.f.model.staleStatuses(); len(stale) != 0 {
				t.Errorf("jobs without their status history after the round: %v", stale)
			}
		})
	}
}

// A round that took a list it did not fetch is followed by the next as soon as that list is an
// interval old, not a whole interval after the round: the poller still sees every change within an
// interval of it. Here the list taken is an interval old less 50 ms (of the test's clock), so the next
// round is due 50 ms later; it lists (the list taken is an interval old then), and the round after it
// is a whole interval later.
func TestPollerListsWhenTakenListIsOld(t *testing.T) {
	const poll = time.Hour
	emu, client := newEmulatorClient(t, emulator.Faults{})
	if _, err := emu.AddJob(emulator.JobSpec{Name: "j", Files: []emulator.FileSpec{{RelativePath: "a", Size: 10}}}); err != nil {
		t.Fatal(err)
	}
	e := newPollEnv(t, poll, emu, client)
	e.listing(t)
	e.clock.Advance(poll - 50*time.Millisecond)
	e.startPoller()
	if due := e.waitRound(t); due != 50*time.Millisecond {
		t.Errorf("the second round due in %v, want 50ms (when the list taken is an interval old)", due)
	}
	if got := emu.Counters().Requests[emulator.EndpointJobs]; got != 1 {
		t.Fatalf("jobs.list %d after the first round, want 1 (the listing's, taken)", got)
	}
	added, err := emu.AddJob(emulator.JobSpec{Name: "new", Files: []emulator.FileSpec{{RelativePath: "b", Size: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(50 * time.Millisecond)
	if due := e.waitRound(t); due != poll {
		t.Errorf("the third round due in %v, want %v (a whole interval after a list of its own)", due, poll)
	}
	if _, ok := e.f.model.get(added.ID); !ok {
		t.Errorf("the job added is not listed after the second round")
	}
	if stale := e.f.model.staleStatuses(); len(stale) != 0 {
		t.Errorf("jobs without their status history after the second round: %v", stale)
	}
	c := emu.Counters()
	if got := c.Requests[emulator.EndpointJobs]; got != 2 {
		t.Errorf("jobs.list %d, want 2", got)
	}
	if got := c.Requests[emulator.EndpointStatuses]; got != 2 {
		t.Errorf("jobs.statuses %d, want 2 (one per job)", got)
	}
}
