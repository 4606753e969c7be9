package download

// The Downloader over remotetest.Faulty, the one fault-injecting wrapper upload, download and fs tests
// share: a failed listing is reported, retried and then succeeds; a listing stalled on the platform
// does not hold Close, and nothing is left waiting.

import (
	"errors"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/remote/remotetest"
)

func TestFaultyListingIsRetriedThenSucceeds(t *testing.T) {
	e := newEnv(t)
	j := e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "x.dat", Size: 3 * testBlock}}})
	fc := remotetest.NewFaulty(e.client)
	fc.Set("JobFiles", remotetest.Fault{Err: errors.New("injected: listing broken"), Times: 2})
	d := e.start(t, Options{Client: fc})
	js := waitDone(t, d, j.ID)
	e.checkJob(t, j, "")
	if n := fc.Calls("JobFiles"); n < 3 {
		t.Errorf("JobFiles called %d times, want the 2 failures and a success", n)
	}
	if len(js.Errors) != 0 {
		t.Errorf("errors still reported after success: %v", js.Errors)
	}
}

func TestFaultyStalledListingDoesNotHoldClose(t *testing.T) {
	e := newEnv(t)
	e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "x.dat", Size: 100}}})
	fc := remotetest.NewFaulty(e.client)
	fc.Set("JobFiles", remotetest.Fault{Stall: true})
	d := e.start(t, Options{Client: fc})
	waitFor(t, "a listing stalled", func() bool { return fc.Stalled() > 0 })
	d.Close() // must not wait for the platform: the stall ends only with the Downloader's context
	if n := fc.Stalled(); n != 0 {
		t.Fatalf("%d calls still stalled after Close", n)
	}
}
