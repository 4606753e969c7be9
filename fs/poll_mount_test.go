package fs_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// betweenRounds waits until the mount's poller, on the test's clock, waits for its next round (the
// round before it done, notifications and all) and returns how long that wait is on the clock.
func betweenRounds(t *testing.T, clock *testutil.Clock) time.Duration {
	t.Helper()
	var w []time.Duration
	fusetest.Eventually(t, 30*time.Second, "the poller waiting for its next round", func() bool {
		w = clock.Waiters()
		return len(w) == 1
	})
	return w[0]
}

// A mount lists its jobs once at start, whether `ls jobs/` comes right away (the poller's first round
// then takes the ls's list, or the ls joins the round's) or after the poller's first round (the ls is
// answered from the round's list). The first used to cost two lists whenever the ls's list was
// answered before the poller's round began: one wasted request per mount, seconds on a WAN for a large
// account. Which of the two starts first is up to the scheduler, so the case is mounted several times
// over (the deterministic orders are TestPollerTakesFreshList's); the poller's clock is the test's and
// stands still, so the poller makes one round only.
func TestMountListsJobsOnce(t *testing.T) {
	for _, c := range []struct {
		name   string
		mounts int
		lsLate bool // ls once the poller's first round is done
	}{
		{"ls right away", 8, false},
		{"ls after the poller's first round", 1, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			for range c.mounts {
				clock := testutil.NewClock(time.Now())
				env := fusetest.Mount(t, fusetest.Options{Jobs: fltJobs(), Poll: time.Hour, Clock: clock})
				if c.lsLate {
					betweenRounds(t, clock)
				}
				out := run(t, "ls", filepath.Join(env.Dir, "jobs"))
				if got, want := strings.Fields(out), []string{env.Jobs[0].ID, env.Jobs[1].ID}; !slices.Equal(got, want) {
					t.Fatalf("ls jobs: %q, want %q", got, want)
				}
				betweenRounds(t, clock)
				if got := env.Requests(emulator.EndpointJobs); got != 1 {
					t.Fatalf("the jobs were listed %d times, want once", got)
				}
				fusetest.Unmount(t, env.Mount, env.Dir)
			}
		})
	}
}

// The poller's round after a listing takes the listing's list when it is less than an interval old,
// in the order the scheduler decides by chance at mount (TestMountListsJobsOnce), made certain here:
// the poller's first list fails (the platform refuses it once), an ls lists the jobs a moment later,
// and the next round, an interval after the first, finds that list fresh and fetches the jobs' status
// histories only. It used to list again.
//
// The poller's clock is the test's. On the real one, the second round came an interval plus the
// timer's lateness after the first, and the ls's list, sent a few milliseconds after the first round
// ended, was still fresh then only while the lateness was shorter than those milliseconds: under load
// the round listed again now and then, and the test failed with the poller right.
func TestPollRoundTakesListingsList(t *testing.T) {
	var lists atomic.Int64
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{Wrap: func(e *emulator.Emulator) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && r.URL.Path == "/api/v2/jobs/" && lists.Add(1) == 1 {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprint(w, `{"detail": "injected: the first jobs list refused"}`)
				return
			}
			e.ServeHTTP(w, r)
		})
	}})
	const (
		poll    = time.Minute
		lsAfter = time.Second // how long after the poller's first round the ls lists, on the test's clock
	)
	clock := testutil.NewClock(time.Now())
	env := fusetest.MountOn(t, p, fusetest.Options{Jobs: fltJobs(), Poll: poll, Faulty: true, Clock: clock}, fusetest.MountExtra{})
	if due := betweenRounds(t, clock); due != poll {
		t.Fatalf("the round after the first is due in %v, want %v (an interval)", due, poll)
	}
	if got := env.Requests(emulator.EndpointJobs); got != 0 {
		t.Fatalf("the poller's first list reached the platform %d times, want refused", got)
	}
	clock.Advance(lsAfter)
	out := run(t, "ls", filepath.Join(env.Dir, "jobs"))
	if got, want := strings.Fields(out), []string{env.Jobs[0].ID, env.Jobs[1].ID}; !slices.Equal(got, want) {
		t.Fatalf("ls jobs: %q, want %q", got, want)
	}
	if got := env.Requests(emulator.EndpointJobs); got != 1 {
		t.Fatalf("the ls listed the jobs %d times, want once", got)
	}
	// The second round, an interval after the first to the nanosecond: the ls's list is an interval
	// less lsAfter old.
	clock.Advance(poll - lsAfter)
	next := betweenRounds(t, clock)
	if got := env.Requests(emulator.EndpointJobs); got != 1 {
		t.Errorf("the jobs were listed %d times, want once (by the ls)", got)
	}
	if got := env.Faulty.Calls("ListJobs"); got != 2 {
		t.Errorf("%d jobs lists asked for, want 2 (the poller's refused, the ls's)", got)
	}
	if got := env.Requests(emulator.EndpointStatuses); got != int64(len(env.Jobs)) {
		t.Errorf("jobs.statuses %d, want %d (one per job, by the second round)", got, len(env.Jobs))
	}
	// A list taken: the next round comes when it is an interval old (nextRound).
	if next != lsAfter {
		t.Errorf("the round after the second is due in %v, want %v (when the ls's list is an interval old)", next, lsAfter)
	}
}
