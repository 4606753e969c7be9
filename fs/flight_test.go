package fs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// N concurrent stats of one job cost one request of each kind: the status history of a listed job
// (jobStatuses, as Getattr asks it) and a job looked up by id before the list knows it (findJob).
// The platform is frozen until all N callers of each kind are in the call, so they overlap for certain.
func TestConcurrentJobLookupsShareOneRequest(t *testing.T) {
	emu, c := newEmulatorClient(t, emulator.Faults{})
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
	emu.SetFrozen(true)
	defer emu.SetFrozen(false)

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
	// Every caller in the two calls; or more than those two requests held: the calls are not shared,
	// and the counters below say so.
	joined := func() bool {
		return f.jobCalls.callers("statuses\x00"+listed.ID) >= n && f.jobCalls.callers("find\x00"+later.ID) >= n ||
			emu.Holding() > 2
	}
	for deadline := time.Now().Add(30 * time.Second); !joined(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("never %d callers in each call: %d statuses, %d find", n,
				f.jobCalls.callers("statuses\x00"+listed.ID), f.jobCalls.callers("find\x00"+later.ID))
		}
	}
	emu.SetFrozen(false)
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

// Once the mount's shared calls are closed (the mount's shutdown), a call asked for later fails at
// once without reaching the platform, and nothing is left running for the shutdown to miss.
func TestFlightAfterShutdownFailsAtOnce(t *testing.T) {
	emu, c := newEmulatorClient(t, emulator.Faults{})
	j, err := emu.AddJob(emulator.JobSpec{Name: "j", Files: []emulator.FileSpec{{RelativePath: "a", Size: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	f := newFsys(Options{}, c, nil)
	f.cancel()
	f.calls.close()
	emu.ResetCounters()
	for _, call := range []struct {
		name string
		do   func() error
	}{
		{"find", func() error { _, err := f.findJob(context.Background(), j.ID); return err }},
		{"statuses", func() error { _, err := f.jobStatuses(context.Background(), j.ID); return err }},
		{"list", func() error { _, err := f.refreshList().wait(context.Background()); return err }},
		{"tree", func() error { _, _, err := f.jobFiles(context.Background(), j.ID); return err }},
	} {
		if err := call.do(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s after shutdown: %v, want %v", call.name, err, context.Canceled)
		}
	}
	if n := emu.Counters().Total(); n != 0 {
		t.Errorf("%d requests reached the platform after shutdown, want none", n)
	}
}
