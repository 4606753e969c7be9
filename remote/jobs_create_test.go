package remote

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

func testSpec(name string, inputs ...string) JobSpec {
	var in []InputFile
	for _, id := range inputs {
		in = append(in, InputFile{ID: id})
	}
	return JobSpec{Name: name, JobAnalyses: []JobAnalysis{{
		Analysis:   AnalysisRef{Code: UserIncludedAnalysis},
		Hardware:   Hardware{CoreType: "standard-plus", CoresPerSlot: 2, Walltime: 1},
		InputFiles: in, Command: "./run.sh", PostProcessScriptCommand: "./compare.sh",
		EnvVars: map[string]string{"K": "V"},
	}}}
}

// TestJobLifecycleV2: create (201) echoes the body in the detail, submit, stop, delete refused while
// running then accepted once completed; the requests went to the v2 endpoints.
func TestJobLifecycleV2(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	lib, err := v.e.AddLibraryFile("build.tar.gz", strings.NewReader("b"), 1)
	if err != nil {
		t.Fatal(err)
	}
	j, err := v.c.CreateJob(ctx, testSpec("regress", lib.ID))
	if err != nil {
		t.Fatal(err)
	}
	d, err := v.c.GetJobDetail(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	ja := d.JobAnalyses[0]
	if d.Name != "regress" || ja.Hardware.CoreType != "standard-plus" || ja.Hardware.CoresPerSlot != 2 ||
		ja.Hardware.Walltime != 1 || ja.Command != "./run.sh" || ja.PostProcessScriptCommand != "./compare.sh" ||
		len(ja.InputFiles) != 1 || ja.InputFiles[0].ID != lib.ID || ja.EnvVars["K"] != "V" {
		t.Fatalf("detail does not echo the body: %+v", d)
	}
	if err := v.c.SubmitJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	_ = v.clk.Sleep(ctx, 20*time.Second) // Executing
	if err := v.c.DeleteJob(ctx, j.ID); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("delete while running: %v, want ErrBadRequest", err)
	}
	if err := v.c.StopJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	_ = v.clk.Sleep(ctx, time.Minute)
	st, err := v.c.JobStatuses(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Completed() || st.Succeeded() {
		t.Fatalf("after stop: %+v", st)
	}
	if err := v.c.DeleteJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	c := v.e.Counters().Requests
	for _, ep := range []string{emulator.EndpointJobCreate, emulator.EndpointJobSubmit, emulator.EndpointJobStop} {
		if c[ep] != 1 {
			t.Errorf("%s: %d requests, want 1", ep, c[ep])
		}
	}
	if c[emulator.EndpointJobDelete] != 2 {
		t.Errorf("delete: %d requests, want 2", c[emulator.EndpointJobDelete])
	}
}

// TestJobsV3: the v3 calls of Rescale's Go client work against the emulator.
func TestJobsV3(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	older, err := v.c.CreateJobV3(ctx, testSpec("older"))
	if err != nil {
		t.Fatal(err)
	}
	_ = v.clk.Sleep(ctx, time.Second)
	newer, err := v.c.CreateJobV3(ctx, testSpec("newer"))
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := v.c.ListJobsV3(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].ID != newer.ID || jobs[1].ID != older.ID {
		t.Fatalf("v3 list not newest first: %+v", jobs)
	}
	d, err := v.c.GetJobV3(ctx, newer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d.JobStatus.Content != StatusPending || d.JobAnalyses[0].Hardware.CoreType != "standard-plus" {
		t.Fatalf("v3 detail: %+v", d)
	}
	st, err := v.c.JobStatusesV3(ctx, newer.ID)
	if err != nil || st.Latest().Status != StatusPending {
		t.Fatalf("v3 statuses: %v %+v", err, st)
	}
	if err := v.c.StopJobV3(ctx, newer.ID); err != nil {
		t.Fatal(err)
	}
	if err := v.c.DeleteJobV3(ctx, newer.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.c.GetJobV3(ctx, newer.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted job: %v", err)
	}
	me, err := v.c.Me(ctx)
	if err != nil || me.FullName == "" || me.Company.Code == "" || me.Workspace.ID == "" {
		t.Fatalf("users/me: %v %+v", err, me)
	}
	f, err := v.c.MyFolders(ctx)
	if err != nil || f.MyJobs == "" || f.MyLibrary == "" {
		t.Fatalf("folders: %v %+v", err, f)
	}
	a, _ := v.e.AddLibraryFile("a.txt", strings.NewReader("a"), 1)
	_ = v.clk.Sleep(ctx, time.Second)
	b, _ := v.e.AddLibraryFile("b.txt", strings.NewReader("b"), 1)
	files, err := v.c.LibraryFilesV3(ctx)
	if err != nil || len(files) != 2 || files[0].ID != b.ID || files[1].ID != a.ID {
		t.Fatalf("v3 files newest first: %v %+v", err, files)
	}
	c := v.e.Counters().Requests
	for _, ep := range []string{emulator.EndpointV3JobCreate, emulator.EndpointV3Jobs, emulator.EndpointV3Job,
		emulator.EndpointV3Statuses, emulator.EndpointV3JobStop, emulator.EndpointV3JobDelete,
		emulator.EndpointFolders, emulator.EndpointV3Files} {
		if c[ep] == 0 {
			t.Errorf("%s: no request", ep)
		}
	}
	if c[emulator.EndpointJobCreate]+c[emulator.EndpointJobs] != 0 {
		t.Errorf("v2 endpoints used: %v", c)
	}
}

// TestJobRejected: a body the platform refuses comes back as a *JobRejectedError with its field errors,
// and nothing is created.
func TestJobRejected(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		tweak func(*JobSpec)
		field string
		want  string
	}{
		{"unknown core type", func(s *JobSpec) { s.JobAnalyses[0].Hardware.CoreType = "nope" }, "hardware", `Unknown core type "nope"`},
		{"walltime required", func(s *JobSpec) {
			s.JobAnalyses[0].Hardware = Hardware{CoreType: "hpc-3", CoresPerSlot: 1}
		}, "hardware", "walltime is required"},
		{"unknown analysis", func(s *JobSpec) { s.JobAnalyses[0].Analysis.Code = "abaqus-x" }, "analysis", "Unknown analysis"},
		{"missing input", func(s *JobSpec) { s.JobAnalyses[0].InputFiles = []InputFile{{ID: "zzzzzz"}} }, "inputFiles", "does not exist"},
		{"no name", func(s *JobSpec) { s.Name = "" }, "name", "required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec("x")
			tc.tweak(&s)
			_, err := v.c.CreateJob(ctx, s)
			var je *JobRejectedError
			if !errors.As(err, &je) || !errors.Is(err, ErrBadRequest) {
				t.Fatalf("err %v, want a *JobRejectedError", err)
			}
			if msgs := strings.Join(je.Fields[tc.field], " "); !strings.Contains(msgs, tc.want) {
				t.Fatalf("fields %v: %s has no %q", je.Fields, tc.field, tc.want)
			}
		})
	}
	if jobs, _ := v.c.ListJobs(ctx, nil); len(jobs) != 0 {
		t.Fatalf("rejected bodies created jobs: %+v", jobs)
	}
}

func TestCoreTypesAnalyses(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	cts, err := v.c.CoreTypes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var marble *CoreType
	required := 0
	for i := range cts {
		if cts[i].Name == "Marble" {
			marble = &cts[i]
		}
		if cts[i].WalltimeRequired {
			required++
		}
	}
	if marble == nil || marble.Code != "standard-plus" || marble.Price <= 0 || len(marble.Cores) == 0 || required == 0 {
		t.Fatalf("core types: %+v", cts)
	}
	as, err := v.c.Analyses(ctx)
	if err != nil || len(as) == 0 || as[0].Code != UserIncludedAnalysis || len(as[0].Versions) == 0 {
		t.Fatalf("analyses: %v %+v", err, as)
	}
}

// TestNewestLibraryFile: the newest file of exactly that name, never a longer name containing it.
func TestNewestLibraryFile(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	old, _ := v.e.AddLibraryFile("build.tar.gz", strings.NewReader("1"), 1)
	_ = v.clk.Sleep(ctx, time.Second)
	newest, _ := v.e.AddLibraryFile("build.tar.gz", strings.NewReader("2"), 1)
	_ = v.clk.Sleep(ctx, time.Second)
	_, _ = v.e.AddLibraryFile("build.tar.gz.old", strings.NewReader("3"), 1)
	f, err := v.c.NewestLibraryFile(ctx, "build.tar.gz")
	if err != nil || f.ID != newest.ID {
		t.Fatalf("newest: %v %s, want %s (not %s)", err, f.ID, newest.ID, old.ID)
	}
	if _, err := v.c.NewestLibraryFile(ctx, "build"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("substring matched: %v", err)
	}
}

// TestJobDetailLenient: analyses in an unknown shape do not hide the job's id.
func TestJobDetailLenient(t *testing.T) {
	var d JobDetail
	err := json.Unmarshal([]byte(`{"id": "AbCd1", "name": "n", "jobStatus": {"content": "Pending"},
		"jobanalyses": [{"envVars": [{"name": "K", "value": "V"}], "hardware": {"coresPerSlot": "many"}}]}`), &d)
	if err != nil || d.ID != "AbCd1" || d.Name != "n" || d.JobStatus.Content != "Pending" {
		t.Fatalf("%v %+v", err, d)
	}
	if err := json.Unmarshal([]byte(`{"id": "x", "name": "n", "jobanalyses": [{"hardware": {"coreType": {"code": "hpc-3"}, "walltime": 2}}]}`), &d); err != nil ||
		d.JobAnalyses[0].Hardware.CoreType != "hpc-3" || d.JobAnalyses[0].Hardware.Walltime != 2 {
		t.Fatalf("v3 shape: %v %+v", err, d)
	}
}

func TestCoreTypeLenient(t *testing.T) {
	var cts []CoreType
	err := json.Unmarshal([]byte(`[{"code": "hpc-3", "name": "Onyx", "cores": [1, "2", 4], "price": "0.15",
		"walltimeRequired": true, "memory": {"perCore": 5300}, "displayOrder": "4"}, {"code": "x", "cores": null, "price": null}]`), &cts)
	if err != nil || len(cts) != 2 || cts[0].Price != 0.15 || len(cts[0].Cores) != 3 || !cts[0].WalltimeRequired ||
		cts[0].DisplayOrder != 4 || cts[1].Code != "x" {
		t.Fatalf("%v %+v", err, cts)
	}
}

// TestStopRun: POST .../runs/{run}/stop/ reaches the platform's run-stop endpoint; a simulated job's
// one run stopped stops the job; an unknown run is not found; a bad run id is refused before sending.
func TestStopRun(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	j, err := v.c.CreateJob(ctx, testSpec("one run"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.c.SubmitJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	_ = v.clk.Sleep(ctx, 20*time.Second) // Executing
	if err := v.c.StopRun(ctx, j.ID, "7"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown run: %v, want ErrNotFound", err)
	}
	if err := v.c.StopRun(ctx, j.ID, ".."); err == nil {
		t.Fatal("run id .. accepted")
	}
	if err := v.c.StopRun(ctx, j.ID, "1"); err != nil {
		t.Fatal(err)
	}
	_ = v.clk.Sleep(ctx, time.Minute)
	st, err := v.c.JobStatuses(ctx, j.ID)
	if err != nil || !st.Completed() || st.Succeeded() {
		t.Fatalf("after stopping its run: %+v %v", st, err)
	}
	if n := v.e.Counters().Requests[emulator.EndpointRunStop]; n != 2 {
		t.Errorf("%d run stops reached the platform, want 2", n)
	}
}
