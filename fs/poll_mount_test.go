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
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/remote/remotetest"
)

// A mount lists its jobs once at start, whether `ls jobs/` comes right away (the poller's first round
// then takes the ls's list, or the ls joins the round's) or after the poller's first round (the ls is
// answered from the round's list). The first used to cost two lists whenever the ls's list was
// answered before the poller's round began: one wasted request per mount, seconds on a WAN for a large
// account. Which of the two starts first is up to the scheduler, so the case is mounted several times
// over (the deterministic orders are TestPollerTakesFreshList's); the interval is an hour, so the
// poller makes one round only.
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
				env := fusetest.Mount(t, fusetest.Options{Jobs: fltJobs(), Poll: time.Hour})
				firstRound := func() {
					fusetest.Eventually(t, 30*time.Second, "the poller's first round", func() bool { return env.Mount.PollRounds() >= 1 })
				}
				if c.lsLate {
					firstRound()
				}
				out := run(t, "ls", filepath.Join(env.Dir, "jobs"))
				if got, want := strings.Fields(out), []string{env.Jobs[0].ID, env.Jobs[1].ID}; !slices.Equal(got, want) {
					t.Fatalf("ls jobs: %q, want %q", got, want)
				}
				firstRound()
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
// the poller's first list fails (the platform refuses it once), an ls lists the jobs, and the next
// round, an interval after the first, finds that list fresh. It fetches the jobs' status histories,
// which the platform holds until the test has counted the lists; the next round cannot start before.
// It used to list again.
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
	const poll = time.Second // the second round comes an interval after the first: the test waits that long
	env := fusetest.MountOn(t, p, fusetest.Options{Jobs: fltJobs(), Poll: poll, Faulty: true}, fusetest.MountExtra{})
	fusetest.Eventually(t, 30*time.Second, "the poller's first round", func() bool { return env.Mount.PollRounds() >= 1 })
	if got := env.Requests(emulator.EndpointJobs); got != 0 {
		t.Fatalf("the poller's first list reached the platform %d times, want refused", got)
	}
	// Held from now on: the ls asks for none, and the second round's are held whenever it comes (an ls
	// slower than the interval would let the round list first; the ls then takes the round's list).
	env.Faulty.Set("JobStatuses", remotetest.Fault{Stall: true})
	defer env.Faulty.Release()
	out := run(t, "ls", filepath.Join(env.Dir, "jobs"))
	if got, want := strings.Fields(out), []string{env.Jobs[0].ID, env.Jobs[1].ID}; !slices.Equal(got, want) {
		t.Fatalf("ls jobs: %q, want %q", got, want)
	}
	fusetest.Eventually(t, 30*time.Second, "the second round fetching statuses", func() bool { return env.Faulty.Stalled() > 0 })
	if got := env.Requests(emulator.EndpointJobs); got != 1 {
		t.Errorf("the jobs were listed %d times, want once (by the ls)", got)
	}
	if got := env.Faulty.Calls("ListJobs"); got != 2 {
		t.Errorf("%d jobs lists asked for, want 2 (the poller's refused, the ls's)", got)
	}
	env.Faulty.Clear("JobStatuses")
	env.Faulty.Release()
	fusetest.Eventually(t, 30*time.Second, "the second round", func() bool { return env.Mount.PollRounds() >= 2 })
	if got := env.Requests(emulator.EndpointStatuses); got != int64(len(env.Jobs)) {
		t.Errorf("jobs.statuses %d, want %d (one per job)", got, len(env.Jobs))
	}
}
