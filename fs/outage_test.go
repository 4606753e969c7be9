package fs_test

// The platform going away under a mount: a stalled body, a frozen platform (connections accepted,
// nothing answered) and a killed one (connections refused) each fail `cp` with EIO within the network
// policy's bound, free the fetch slots they held, and the mount serves again once the platform is
// back; a blip shorter than the bound is invisible. The policy's numbers are scaled down (a 4 s budget
// for the default 60 s) so each case takes seconds, and so are the client's backoffs (1 s to 30 s in
// production: ten attempts outlast the budget there, and must here too, or a refused connection would
// end in the retry count rather than in the policy).
//
// What is asserted is that the EIO came from the policy (a call ran out of its budget, not before the
// budget, and the cache did not retry it into a second wait); the time cp took is only held to a
// generous multiple of the bound, as a machine under load can make it late but never early.

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// outagePolicy: FailureMemory covers the kernel's retry of a failed read even on a loaded machine (it
// comes within milliseconds, but a second budget spent because it came late would be a flake).
var outagePolicy = remote.Policy{DialTimeout: time.Second, HeaderTimeout: 500 * time.Millisecond,
	IdleTimeout: 500 * time.Millisecond, Budget: 4 * time.Second, FailureMemory: 3 * time.Second}

// outageBound stops a read the policy does not end: three times the policy's bound (the budget and
// one header wait), slack for a loaded machine, not a measure of speed.
const outageBound = 3 * (4*time.Second + 500*time.Millisecond)

func outageMount(t *testing.T) (*fusetest.Platform, *fusetest.Env, string, *fusetest.LogBuffer) {
	t.Helper()
	fusetest.CheckLeaks(t)
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{})
	logger, logs := fusetest.CaptureLog(t, slog.LevelInfo)
	env := fusetest.MountOn(t, p, fusetest.Options{Jobs: fltJobs(), Parallel: 2, Poll: 200 * time.Millisecond, Logger: logger},
		fusetest.MountExtra{Client: remote.Options{Policy: outagePolicy, MinBackoff: 50 * time.Millisecond,
			MaxBackoff: 2 * time.Second}, Permanent: remote.Permanent})
	dir := filepath.Join(env.Dir, "jobs/Flt01/case/VTK")
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	return p, env, filepath.Join(dir, "big.vtk"), logs
}

func outageCopy(t *testing.T, src string) ([]byte, string, error) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "out")
	out, err := exec.Command("cp", src, dst).CombinedOutput()
	if err != nil {
		return nil, string(out), err
	}
	b, err := os.ReadFile(dst)
	return b, string(out), err
}

func TestOutageFailsWithinBound(t *testing.T) {
	cases := []struct {
		name          string
		break_, mend  func(p *fusetest.Platform)
		wantHoldDrain bool
	}{
		{"stalled body", func(p *fusetest.Platform) {
			p.Emulator().SetFaults(emulator.Faults{StallRate: 1, Endpoints: []string{emulator.EndpointContents}})
		}, func(p *fusetest.Platform) { p.Emulator().SetFaults(emulator.Faults{}) }, true},
		{"frozen platform", func(p *fusetest.Platform) { p.Emulator().SetFrozen(true) },
			func(p *fusetest.Platform) { p.Emulator().SetFrozen(false) }, true},
		{"killed platform", func(p *fusetest.Platform) { p.Stop() }, func(p *fusetest.Platform) { p.Start() }, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, env, src, logs := outageMount(t)
			want := env.Plaintext(t, env.Jobs[0].Files[0].ID)
			c.break_(p)
			start := time.Now()
			_, out, err := outageCopy(t, src)
			el := time.Since(start)
			if err == nil || !strings.Contains(out, "Input/output error") {
				t.Fatalf("cp during the outage: %v %q, want an I/O error", err, out)
			}
			t.Logf("cp failed after %v: %s", el.Round(time.Millisecond), strings.TrimSpace(out))
			// The EIO is the policy's: a call ran out of its budget (not the client's or the cache's
			// retry count running out first), and the cache took that as final (no retry, no second wait).
			if h := env.Client.Health(); h.GaveUp == 0 {
				t.Errorf("no call ran out of budget: the EIO came from elsewhere (%+v)", h)
			}
			if s := env.Cache.Stats(); s.Retries != 0 {
				t.Errorf("the cache retried failed fetches %d times, want none (the policy's failure is final)", s.Retries)
			}
			if el < outagePolicy.Budget || el > outageBound {
				t.Errorf("cp failed after %v, want between the budget %v and %v", el, outagePolicy.Budget, outageBound)
			}
			// The fetches that were stuck end: their --parallel slots are free again.
			fusetest.Eventually(t, outageBound, "no fetch in flight", func() bool { return env.Cache.Stats().InFlight == 0 })
			if c.wantHoldDrain {
				fusetest.Eventually(t, outageBound, "the emulator holding no request", func() bool { return p.Emulator().Holding() == 0 })
				// The outage is logged once, not once per block or per file.
				if n := strings.Count(logs.String(), "the platform is not answering"); n != 1 {
					t.Errorf("the outage was logged %d times, want once", n)
				}
				if n := strings.Count(logs.String(), "level=ERROR"); n != 0 {
					t.Errorf("%d ERROR lines during the outage, want none (the outage line says it)", n)
				}
			}
			c.mend(p)
			fusetest.Eventually(t, 20*time.Second, "cp working again", func() bool {
				got, _, err := outageCopy(t, src)
				return err == nil && bytes.Equal(got, want)
			})
		})
	}
}

// A freeze shorter than the budget: the reads wait it out and cp never sees it.
func TestOutageBlipInvisible(t *testing.T) {
	p, env, src, _ := outageMount(t)
	want := env.Plaintext(t, env.Jobs[0].Files[0].ID)
	p.Emulator().SetFrozen(true)
	type result struct {
		b   []byte
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, out, err := outageCopy(t, src)
		done <- result{b, out, err}
	}()
	fusetest.Eventually(t, 10*time.Second, "a read held by the frozen platform", func() bool { return p.Emulator().Holding() > 0 })
	p.Emulator().SetFrozen(false)
	r := <-done
	if r.err != nil || !bytes.Equal(r.b, want) {
		t.Fatalf("cp across a blip: %v %q (%d bytes, want %d)", r.err, r.out, len(r.b), len(want))
	}
}

// Unmounting while a poll round is stuck on a frozen platform returns at once: the tree's context is
// cancelled before the poller is waited for (it used to be the other way round, and the unmount
// waited for the round's retries: up to the budget now, about 20 minutes before the policy).
func TestUnmountWhileFrozen(t *testing.T) {
	fusetest.CheckLeaks(t)
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{})
	env := fusetest.MountOn(t, p, fusetest.Options{Jobs: fltJobs(), Poll: 50 * time.Millisecond},
		fusetest.MountExtra{Permanent: remote.Permanent}) // the default policy: a 60 s budget
	if _, err := os.ReadDir(filepath.Join(env.Dir, "jobs")); err != nil {
		t.Fatal(err)
	}
	p.Emulator().SetFrozen(true)
	defer p.Emulator().SetFrozen(false)
	fusetest.Eventually(t, 10*time.Second, "a poll round held by the frozen platform", func() bool { return p.Emulator().Holding() > 0 })
	start := time.Now()
	if err := env.Mount.Unmount(); err != nil {
		t.Fatal(err)
	}
	t.Logf("unmounted in %v", time.Since(start).Round(time.Millisecond))
	// Cancelled, not waited out: had the unmount waited for the round, the round would have ended
	// only when its budget ran out, and counted as given up. Cancelled and then waited for (the round
	// and any shared call a lookup started): none is left in progress once Unmount returns.
	if n := env.Client.Health().Calls; n != 0 {
		t.Errorf("after the unmount %d platform calls still in progress, want none", n)
	}
	if n := env.Client.Health().GaveUp; n != 0 {
		t.Errorf("after the unmount %d calls had run out of budget; want the poll round cancelled", n)
	}
}
