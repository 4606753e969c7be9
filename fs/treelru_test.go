package fs

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

func lruEnv(t testing.TB, jobs, files int) (*fsys, *emulator.Emulator, []string) {
	t.Helper()
	emu, c := newEmulatorClient(t, emulator.Faults{})
	var ids []string
	for i := range jobs {
		var fs []emulator.FileSpec
		for k := range files {
			fs = append(fs, emulator.FileSpec{RelativePath: fmt.Sprintf("case/d%d/output-%06d.vtk", k%10, k), Size: 1})
		}
		j, err := emu.AddJob(emulator.JobSpec{Name: fmt.Sprintf("job %d", i), Files: fs})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	f := newFsys(Options{}, c, nil)
	t.Cleanup(f.cancel)
	ctx := context.Background()
	if err := f.loadJobs(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := f.jobStatuses(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	return f, emu, ids
}

// Completed jobs' listings are kept within the bound, least recently used dropped first; a dropped
// one is fetched again when next needed, a kept one is not.
func TestTreeLRUBound(t *testing.T) {
	f, emu, ids := lruEnv(t, 30, 10) // each listing holds 10 files (+1: the job's own files)
	f.model.lru.max = 60
	ctx := context.Background()
	for _, id := range ids {
		if _, final, err := f.jobFiles(ctx, id); err != nil || !final {
			t.Fatalf("job %s: final %v, %v", id, final, err)
		}
		if n := f.model.treeFiles(); n > 60 {
			t.Fatalf("listings hold %d files, bound 60", n)
		}
	}
	emu.ResetCounters()
	if _, _, err := f.jobFiles(ctx, ids[len(ids)-1]); err != nil {
		t.Fatal(err)
	}
	if n := emu.Counters().Requests[emulator.EndpointJobFiles]; n != 0 {
		t.Errorf("the most recent listing was fetched again (%d requests)", n)
	}
	if _, _, err := f.jobFiles(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if n := emu.Counters().Requests[emulator.EndpointJobFiles]; n != 1 {
		t.Errorf("the oldest listing: %d requests, want 1 (it was dropped)", n)
	}
	if n := f.model.treeFiles(); n > 60 {
		t.Errorf("listings hold %d files after a refetch, bound 60", n)
	}
}

// BenchmarkTreeMemory measures the heap a job listing holds per file (reported as B/file), for the
// bound's documentation. Run: go test -run XXX -bench TreeMemory -benchtime 1x ./fs/
func BenchmarkTreeMemory(b *testing.B) {
	const files = 20000
	f, _, ids := lruEnv(b, 1, files)
	ctx := context.Background()
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f.model.invalidateTree(ids[0])
		t := f.model.treeFor(ids[0])
		t.mu.Lock()
		t.root, t.final = nil, false
		t.mu.Unlock()
		root, _, err := f.jobFiles(ctx, ids[0])
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/files, "B/file")
		runtime.KeepAlive(root)
	}
}
