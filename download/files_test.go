package download

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
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

// TestDownloaderReadsStorageWithoutAGetFilePerFile: reading through a direct storage source, the
// Downloader hands it the files it listed (Options.FileSeen), so each file costs one storage GET and
// no GetFile: the file-access limit (about 25 requests/s) must not pace a download from storage.
func TestDownloaderReadsStorageWithoutAGetFilePerFile(t *testing.T) {
	e := newEnv(t)
	var specs []emulator.FileSpec
	for i := range 40 {
		specs = append(specs, textFile(fmt.Sprintf("out/probe_%02d.dat", i), content(200+i, byte(i))))
	}
	j := e.addJob(t, emulator.JobSpec{Name: "direct", Files: specs})
	ds := remote.NewDirectSource(e.client, remote.DirectSourceOptions{Logger: e.log})
	c, err := cache.New(ds, cache.Options{BlockSize: testBlock, MinRequestSize: testBlock, MaxRequestSize: 4 * testBlock,
		Parallel: 8, Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	d := e.start(t, Options{Cache: c, FileSeen: ds.Register})
	waitDone(t, d, j.ID)
	e.checkJob(t, j, "")
	cnt := e.emu.Counters()
	if n := cnt.Requests[emulator.EndpointFile]; n != 0 {
		t.Errorf("%d GetFile requests for %d files, want none", n, len(j.Files))
	}
	if n := cnt.Requests[emulator.EndpointContents]; n != 0 {
		t.Errorf("%d /contents/ requests, want none: storage serves them", n)
	}
}
