package download

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestFilesDownloadsManySmallFilesInParallel: Files (the API behind `submit --download`) downloads a
// job's small files with several in flight, one request each, byte-identical; a second call fetches
// nothing. In flight is shown, not timed: the first inFlight requests are held until all of them have
// arrived, which only happens if that many files are fetched at once.
func TestFilesDownloadsManySmallFilesInParallel(t *testing.T) {
	e := newEnv(t)
	var specs []emulator.FileSpec
	for i := range 60 {
		specs = append(specs, textFile(fmt.Sprintf("sweep/d%d/probe_%02d.dat", i/20, i), content(100+i*37, byte(i))))
	}
	j := e.addJob(t, emulator.JobSpec{Name: "many", Files: specs})

	const inFlight = 8
	var mu sync.Mutex
	arrived, timedOut := 0, false
	all := make(chan struct{})
	gate := func() {
		mu.Lock()
		arrived++
		n := arrived
		if n == inFlight {
			close(all)
		}
		mu.Unlock()
		if n > inFlight {
			return
		}
		select {
		case <-all:
		case <-time.After(20 * time.Second): // a guard against hanging, not a timing: the test fails below
			mu.Lock()
			timedOut = true
			mu.Unlock()
		}
	}
	e.gate.Store(&gate)

	files, err := e.client.JobFiles(context.Background(), j.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	o := FilesOptions{Cache: e.newCache(t), Dir: e.dir, Logger: e.log}
	if err := Files(context.Background(), o, j.ID, files); err != nil {
		t.Fatalf("Files: %v", err)
	}
	mu.Lock()
	if timedOut {
		t.Errorf("never %d files in flight at once", inFlight)
	}
	mu.Unlock()
	e.checkJob(t, j, "")
	// The emulator counts a request once its handler returns, maybe just after the client has it.
	waitFor(t, "the emulator's counters", func() bool {
		return e.emu.Counters().Requests[emulator.EndpointContents] >= int64(len(j.Files))
	})
	reqs := e.emu.Counters().Requests[emulator.EndpointContents]
	if reqs != int64(len(j.Files)) {
		t.Errorf("%d /contents/ requests for %d small files, want one each", reqs, len(j.Files))
	}

	if err := Files(context.Background(), o, j.ID, files); err != nil {
		t.Fatalf("second Files: %v", err)
	}
	if n := e.emu.Counters().Requests[emulator.EndpointContents]; n != reqs {
		t.Errorf("the second call made %d more requests, want none", n-reqs)
	}
}
