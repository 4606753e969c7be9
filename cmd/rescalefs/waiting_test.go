package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

func TestWaitingLine(t *testing.T) {
	for _, c := range []struct {
		w    rfs.Waiting
		want string
	}{
		{rfs.Waiting{}, ""},
		{rfs.Waiting{Reads: 2}, "reads waiting: 2"},
		{rfs.Waiting{Reads: 1, Why: []string{"a", "b"}}, "reads waiting: 1 (a; b)"},
	} {
		if got := waitingLine(c.w); got != c.want {
			t.Errorf("waitingLine(%+v) = %q, want %q", c.w, got, c.want)
		}
	}
}

// A platform answering every read with 429 and a long Retry-After: `rescalefs status` and
// .rescalefs/status say how many reads wait, that the platform throttles them and until when, and
// that the reads beyond --parallel wait for a slot.
func TestStatusSaysWhyReadsWait(t *testing.T) {
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{})
	env := fusetest.MountOn(t, p, fusetest.Options{Parallel: 1, Readahead: -1, Jobs: []emulator.JobSpec{
		{ID: "Wait01", Files: []emulator.FileSpec{
			{RelativePath: "a.dat", Size: 200 << 10}, {RelativePath: "b.dat", Size: 200 << 10}}},
	}}, fusetest.MountExtra{Client: remote.Options{MaxRetryAfter: time.Hour}})
	dir := filepath.Join(env.Dir, "jobs/Wait01")
	for _, name := range []string{"a.dat", "b.dat"} { // listed and looked up before the fault
		if out, err := exec.Command("stat", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Fatalf("stat %s: %v %s", name, err, out)
		}
	}
	before := env.Requests(emulator.EndpointContents)
	p.Emulator().SetFaults(emulator.Faults{ThrottleRate: 1, RetryAfter: 30 * time.Minute,
		Endpoints: []string{emulator.EndpointContents}})
	for _, name := range []string{"a.dat", "b.dat"} {
		cmd := exec.Command("cat", filepath.Join(dir, name))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	statusPath := filepath.Join(env.Dir, ".rescalefs", "status")
	var st mountState
	fusetest.Eventually(t, 20*time.Second, "two reads waiting, one throttled, one for a slot", func() bool {
		var err error
		st, err = readMountStatus(statusPath)
		return err == nil && st.Waiting.Reads >= 2 && st.Status.Platform != nil && st.Status.Platform.Throttled == 1 &&
			st.Cache != nil && st.Cache.SlotWaits >= 1
	})
	if got := env.Requests(emulator.EndpointContents) - before; got != 1 {
		t.Errorf("%d contents requests during the throttle, want 1 (the one told to wait)", got)
	}
	if until := st.Status.Platform.ThrottledUntil; until.Before(time.Now().Add(20 * time.Minute)) {
		t.Errorf("throttled until %v, want about 30 minutes from now (the Retry-After)", until)
	}
	var out, errb bytes.Buffer
	if code := runStatus([]string{env.Dir}, &out, &errb); code != exitOK {
		t.Fatalf("status: %d %s", code, errb.String())
	}
	t.Logf("rescalefs status:\n%s", out.String())
	for _, want := range []string{"reads waiting: ", "1 platform calls throttled (429) until", "waiting for a --parallel slot (1 in flight)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status says:\n%s\nwant it to contain %q", out.String(), want)
		}
	}
}
