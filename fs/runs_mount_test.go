package fs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestDOERunsMount: a job with several runs shows jobs/<id>/run<N>/ with each run's own files and its
// variables as user.rescale.* attributes; a single-run job keeps the plain layout.
func TestDOERunsMount(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{RunJobs: true, Lifecycle: emulator.Lifecycle{Stopping: time.Nanosecond},
		Library: []fusetest.LibraryFile{
			{Name: "params.csv", Content: []byte("x,label\n0.5,a\n1,b\n1.5,c\n2,d\n2.5,e\n")},
			{Name: "case.tmpl", Content: []byte("x=${x?string(\"0.00\")} label=${label}\n")},
		}})
	ctx := fusetest.Context(t)
	spec := func(name string, doe bool) remote.JobSpec {
		ja := remote.JobAnalysis{Analysis: remote.AnalysisRef{Code: remote.UserIncludedAnalysis},
			Hardware: remote.Hardware{CoreType: "emerald", CoresPerSlot: 1, Slots: 2},
			Command:  "cat case/in.txt > result.txt", PostProcessScriptCommand: `printf 'seen\t%s\n' "$label"`}
		s := remote.JobSpec{Name: name, JobAnalyses: []remote.JobAnalysis{ja}}
		if doe {
			s.ParamFile = &remote.FileRef{ID: env.Library[0].ID}
			s.JobAnalyses[0].TemplateTasks = []remote.TemplateTask{{TemplateFile: remote.FileRef{ID: env.Library[1].ID},
				ProcessedFilename: "case/in.txt"}}
		} else {
			s.JobAnalyses[0].Command = "echo single > result.txt"
		}
		return s
	}
	var ids []string
	for _, doe := range []bool{true, false} {
		j, err := env.Client.CreateJob(ctx, spec(fmt.Sprintf("doe=%v", doe), doe))
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Client.SubmitJob(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.ID)
	}
	doeDir, singleDir := filepath.Join(env.Dir, "jobs", ids[0]), filepath.Join(env.Dir, "jobs", ids[1])
	fusetest.Eventually(t, 30*time.Second, "both jobs completed in completed/", func() bool {
		_, e1 := os.Lstat(filepath.Join(env.Dir, "completed", ids[0]))
		_, e2 := os.Lstat(filepath.Join(env.Dir, "completed", ids[1]))
		return e1 == nil && e2 == nil
	})
	env.Emulator.ResetCounters()
	var names []string
	fusetest.Eventually(t, 10*time.Second, "the DOE job's folder lists run1..run5", func() bool {
		entries, err := os.ReadDir(doeDir)
		names = names[:0]
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return err == nil && slices.Equal(names, []string{"run1", "run2", "run3", "run4", "run5"})
	})
	for i, label := range []string{"a", "b", "c", "d", "e"} {
		run := filepath.Join(doeDir, fmt.Sprintf("run%d", i+1))
		b, err := os.ReadFile(filepath.Join(run, "result.txt"))
		want := fmt.Sprintf("x=%.2f label=%s\n", 0.5*float64(i+1), label)
		if err != nil || string(b) != want {
			t.Errorf("%s/result.txt = %q, %v; want %q", run, b, err, want)
		}
		if _, err := os.Stat(filepath.Join(run, "process_output.log")); err != nil {
			t.Errorf("%s has no log of its own: %v", run, err)
		}
		for name, want := range map[string]string{"run": fmt.Sprint(i + 1), "label": label, "seen": label,
			"x": strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%g", 0.5*float64(i+1)), ".0"), ".")} {
			if got := liveXattr(t, run, "user.rescale."+name); got != want {
				t.Errorf("%s: user.rescale.%s = %q, want %q", run, name, got, want)
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(singleDir, "result.txt"))
	if err != nil || string(b) != "single\n" {
		t.Fatalf("single-run job: result.txt = %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(singleDir, "run1")); !os.IsNotExist(err) {
		t.Fatalf("a single-run job shows run1/: %v", err)
	}
	// Each job's files in one request, grouped by the run their paths name: the runs asked once, for the
	// DOE job's variables, and no run's own list.
	for endpoint, want := range map[string]int64{emulator.EndpointJobFiles: 2, emulator.EndpointRuns: 1, emulator.EndpointRunFiles: 0} {
		if got := env.Requests(endpoint); got != want {
			t.Errorf("%s: %d requests, want %d", endpoint, got, want)
		}
	}
}
