package fs_test

// Memory measurements for the bounds of README "Guarantees" (never timed in tests; run on demand):
//
//	go test -run XXX -bench 'CompletedFilterReaddir|LiveTailSoak' -benchtime 1x -timeout 2h ./fs/
//
// RESCALEFS_SOAK_JOBS / RESCALEFS_SOAK_FILES size the readdir (default 120 jobs of 2500 files) and
// RESCALEFS_SOAK_TAIL the tail -f (default 2m, a 64 MiB log growing over that time). The emulator runs
// in the same process, so heap figures are deltas from a baseline taken with the platform populated.

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func heapNow() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// BenchmarkCompletedFilterReaddir lists completed/@vtk/ (which lists every completed job's files to
// prune those without a match) over many jobs, bounded (the default) and unbounded, and reports the
// heap the mount keeps afterwards.
func BenchmarkCompletedFilterReaddir(b *testing.B) {
	jobs, files := envInt("RESCALEFS_SOAK_JOBS", 120), envInt("RESCALEFS_SOAK_FILES", 2500)
	var specs []emulator.JobSpec
	for i := range jobs {
		var fs []emulator.FileSpec
		for k := range files {
			fs = append(fs, emulator.FileSpec{RelativePath: fmt.Sprintf("case/d%02d/field-%05d.vtk", k%50, k), Size: 1})
		}
		specs = append(specs, emulator.JobSpec{Name: fmt.Sprintf("soak %d", i), Created: time.Now().Add(-time.Duration(i+1) * time.Hour), Files: fs})
	}
	for _, c := range []struct {
		name string
		max  int
	}{{"bounded", 0}, {"unbounded", 1 << 30}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				env := fusetest.Mount(b, fusetest.Options{Jobs: specs, Poll: time.Hour, MaxTreeFiles: c.max})
				fusetest.Eventually(b, time.Minute, "the jobs listed", func() bool {
					es, err := os.ReadDir(filepath.Join(env.Dir, "completed"))
					return err == nil && len(es) == jobs
				})
				base := heapNow()
				start := time.Now()
				es, err := os.ReadDir(filepath.Join(env.Dir, "completed", "@vtk"))
				if err != nil || len(es) != jobs {
					b.Fatalf("readdir completed/@vtk: %d entries, %v", len(es), err)
				}
				el := time.Since(start)
				kept := heapNow() - base
				b.ReportMetric(float64(kept)/(1<<20), "MiB-kept")
				b.ReportMetric(el.Seconds(), "s-readdir")
				b.Logf("%s: %d jobs x %d files: readdir %v, heap kept %.1f MiB", c.name, jobs, files, el.Round(time.Millisecond), float64(kept)/(1<<20))
			}
		})
	}
}

// BenchmarkLiveTailSoak follows a fast-growing live log with tail -f and reports what the tail endpoint
// sent and the heap's peak above the baseline.
func BenchmarkLiveTailSoak(b *testing.B) {
	dur, err := time.ParseDuration(os.Getenv("RESCALEFS_SOAK_TAIL"))
	if err != nil || dur <= 0 {
		dur = 2 * time.Minute
	}
	const logSize = 64 << 20
	for b.Loop() {
		env := fusetest.Mount(b, fusetest.Options{Lifecycle: liveLifecycle, Jobs: []emulator.JobSpec{{
			ID: "Soak1", Name: "growing log", RunFor: dur + 30*time.Second,
			Files: []emulator.FileSpec{{RelativePath: "process_output.log", Size: logSize, Seed: 7}},
		}}})
		logPath := filepath.Join(env.Dir, "jobs/Soak1/process_output.log")
		fusetest.Eventually(b, time.Minute, "the live log", func() bool {
			_, err := os.Stat(logPath)
			return err == nil
		})
		base := heapNow()
		sent0 := env.Emulator.Counters().BytesOut[emulator.EndpointTail]
		cmd := exec.Command("tail", "-s", "0.5", "-f", logPath)
		var printed atomic.Int64
		pr, pw := io.Pipe()
		cmd.Stdout = pw
		go func() {
			n, _ := io.Copy(io.Discard, pr)
			printed.Add(n)
		}()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var peak int64
		for end := time.Now().Add(dur); time.Now().Before(end); time.Sleep(time.Second) {
			peak = max(peak, heapNow()-base)
		}
		cmd.Process.Kill()
		cmd.Wait()
		pw.Close()
		sent := env.Emulator.Counters().BytesOut[emulator.EndpointTail] - sent0
		fi, _ := os.Stat(logPath)
		b.ReportMetric(float64(sent)/(1<<20), "MiB-sent")
		b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-heap")
		b.Logf("tail -f for %v of a log growing to %d bytes (%d now): tail endpoint sent %.1f MiB, heap peak +%.1f MiB",
			dur, logSize, fi.Size(), float64(sent)/(1<<20), float64(peak)/(1<<20))
	}
}
