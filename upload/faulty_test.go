package upload

// The Engine over remotetest.Faulty, the one fault-injecting wrapper upload, download and fs tests
// share: a failing publish is retried and then lands exactly; a registration stalled on the platform
// does not hold Close, and nothing is left waiting.

import (
	"errors"
	"testing"

	"github.com/rescalefs/rescalefs/remote/remotetest"
)

func TestFaultyPublishIsRetriedThenSucceeds(t *testing.T) {
	p := newPlatform(t, false)
	fc := remotetest.NewFaulty(p.c)
	fc.Set("UploadSmall", remotetest.Fault{Err: errors.New("injected: publish broken"), Times: 2})
	o := p.engineOpts(t.TempDir())
	o.Client = fc
	h := startEngine(t, o)
	data := randomData(1, 100<<10)
	id := enqueue(t, h.eng, "faulty.dat", data)
	f := h.wait(id)
	p.checkPublished(f, "faulty.dat", data)
	if n := fc.Calls("UploadSmall"); n < 3 {
		t.Errorf("UploadSmall called %d times, want the 2 failures and a success", n)
	}
}

func TestFaultyStalledRegistrationDoesNotHoldClose(t *testing.T) {
	p := newPlatform(t, false)
	fc := remotetest.NewFaulty(p.c)
	fc.Set("RegisterFile", remotetest.Fault{Stall: true})
	o := p.engineOpts(t.TempDir())
	o.Client, o.SmallThreshold = fc, -1 // multipart, then the stalled registration
	h := startEngine(t, o)
	enqueue(t, h.eng, "stalled.dat", randomData(2, 1000))
	waitFor(t, func() bool { return fc.Stalled() > 0 })
	h.eng.Close() // must not wait for the platform: the stall ends only with the engine's context
	if n := fc.Stalled(); n != 0 {
		t.Fatalf("%d calls still stalled after Close", n)
	}
}
