package fs

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// N concurrent stats of one job cost one request of each kind: the status history of a listed job
// (jobStatuses, as Getattr asks it) and a job looked up by id before the list knows it (findJob).
// The platform answers slowly, so the callers overlap.
func TestConcurrentJobLookupsShareOneRequest(t *testing.T) {
	emu, c := newEmulatorClient(t, emulator.Faults{Latency: 100 * time.Millisecond})
	listed, err := emu.AddJob(emulator.JobSpec{Name: "listed", Files: []emulator.FileSpec{{RelativePath: "a", Size: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFsys(Options{}, c, nil)
	defer f.cancel()
	ctx := context.Background()
	if err := f.loadJobs(ctx); err != nil {
		t.Fatal(err)
	}
	later, err := emu.AddJob(emulator.JobSpec{Name: "added after the list", Files: []emulator.FileSpec{{RelativePath: "b", Size: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	emu.ResetCounters()

	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if info, err := f.jobStatuses(ctx, listed.ID); err != nil || !info.HaveStatuses {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			if info, err := f.findJob(ctx, later.ID); err != nil || info.ID != later.ID {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("lookup: %v", err)
	}
	got := emu.Counters().Requests
	if got[emulator.EndpointStatuses] != 2 || got[emulator.EndpointJob] != 1 {
		t.Errorf("%d concurrent lookups of each job sent %d statuses and %d job requests, want 2 (one per job) and 1",
			n, got[emulator.EndpointStatuses], got[emulator.EndpointJob])
	}
}
