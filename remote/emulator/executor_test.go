package emulator

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// quickLifecycle has no queueing: an executed job starts as soon as it is submitted.
var quickLifecycle = Lifecycle{Stopping: time.Nanosecond}

func newExecHarness(t *testing.T, walltimeUnit time.Duration) *harness {
	t.Helper()
	return newHarness(t, Options{Now: time.Now, RunJobs: true, Lifecycle: quickLifecycle,
		WorkDir: t.TempDir(), WalltimeUnit: walltimeUnit})
}

// tarball makes an archive of files (path -> content) with the real tar (ext picks the compression), or
// a zip.
func tarball(t *testing.T, ext string, files map[string]string) []byte {
	t.Helper()
	src := t.TempDir()
	var names []string
	for p, c := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
		names = append(names, p)
	}
	if ext == ".zip" {
		return zipOf(t, files) // zip(1) is not on every machine; the format is archive/zip's
	}
	out := filepath.Join(t.TempDir(), "a"+ext)
	var cmd *exec.Cmd
	switch ext {
	case ".tar":
		cmd = exec.Command("tar", append([]string{"cf", out}, names...)...)
	default:
		cmd = exec.Command("tar", append([]string{"czf", out}, names...)...)
	}
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v: %s", cmd.Args, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for p, c := range files {
		w, err := zw.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func (h *harness) library(name string, content []byte) string {
	h.t.Helper()
	f, err := h.e.AddLibraryFile(name, bytes.NewReader(content), int64(len(content)))
	if err != nil {
		h.t.Fatal(err)
	}
	return f.ID
}

// submit creates and submits a job from body and returns its id.
func (h *harness) submit(body map[string]any) string {
	h.t.Helper()
	b, _ := json.Marshal(body)
	resp, rb := h.do(http.MethodPost, "/api/v2/jobs/", bytes.NewReader(b), "Content-Type", "application/json")
	if resp.StatusCode != http.StatusCreated {
		h.t.Fatalf("create: %d %s", resp.StatusCode, rb)
	}
	var j struct{ ID string }
	if err := json.Unmarshal(rb, &j); err != nil {
		h.t.Fatal(err)
	}
	if resp, rb := h.do(http.MethodPost, "/api/v2/jobs/"+j.ID+"/submit/", nil); resp.StatusCode != http.StatusOK {
		h.t.Fatalf("submit: %d %s", resp.StatusCode, rb)
	}
	return j.ID
}

func jobBody(name, command, post string, extra map[string]any) map[string]any {
	ja := map[string]any{
		"analysis": map[string]any{"code": "user_included"},
		"hardware": map[string]any{"coreType": "emerald", "coresPerSlot": 2, "walltime": 1},
		"command":  command, "postProcessScriptCommand": post,
	}
	for k, v := range extra {
		ja[k] = v
	}
	return map[string]any{"name": name, "jobanalyses": []any{ja}}
}

// waitCompleted polls the statuses (newest first) until Completed and returns that status's reason.
func (h *harness) waitCompleted(id string) string {
	h.t.Helper()
	var st []statusJSON
	testutil.Eventually(h.t, 30*time.Second, "job "+id+" completed", func() bool {
		st = all[statusJSON](h, "/api/v2/jobs/"+id+"/statuses/")
		return len(st) > 0 && st[0].Status == StatusCompleted
	})
	if st[0].StatusReason == nil {
		return ""
	}
	return *st[0].StatusReason
}

// outputs maps the relative paths of a job's (or a run's) files to their contents.
func (h *harness) outputs(path string) map[string]string {
	h.t.Helper()
	out := map[string]string{}
	for _, f := range all[fileJSON](h, path) {
		out[f.RelativePath] = string(plaintext(h.t, h.e, f.ID))
	}
	return out
}

var logLine = regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\]: `)

// TestExecutorRunsJob: inputs unpacked in order (the delta overrides the base), the command and the
// post-processing command run under bash with RESCALE_* variables, the log has Rescale's format, only
// created or changed files are published, and name<TAB>value lines become run variables.
func TestExecutorRunsJob(t *testing.T) {
	h := newExecHarness(t, 0)
	base := h.library("base.tar.gz", tarball(t, ".tar.gz", map[string]string{
		"bin/tool.sh": "echo base", "data/a.txt": "A"}))
	delta := h.library("delta.zip", tarball(t, ".zip", map[string]string{"bin/tool.sh": "echo delta"}))
	compare := h.library("compare.sh", []byte("#!/bin/bash\necho PASS\nprintf 'score\\t0.5\\n'\n"))
	id := h.submit(jobBody("run", "bash bin/tool.sh > out.txt\necho cores=$RESCALE_CORES_PER_SLOT type=$RESCALE_CORE_TYPE k=$K\necho oops >&2",
		"./compare.sh", map[string]any{
			"inputFiles":        []any{map[string]any{"id": base}, map[string]any{"id": delta}},
			"postProcessScript": map[string]any{"id": compare},
			"envVars":           map[string]string{"K": "v"},
		}))
	if reason := h.waitCompleted(id); reason != ReasonSucceeded {
		t.Fatalf("reason %q", reason)
	}
	out := h.outputs("/api/v2/jobs/" + id + "/files/")
	if out["out.txt"] != "delta\n" {
		t.Errorf("out.txt = %q: the delta did not override the base", out["out.txt"])
	}
	for _, p := range []string{"data/a.txt", "bin/tool.sh", "compare.sh"} {
		if _, ok := out[p]; ok {
			t.Errorf("unchanged input %s published as an output", p)
		}
	}
	log := out[processOutputLog]
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	for _, l := range lines {
		if !logLine.MatchString(l) {
			t.Errorf("log line without Rescale's time stamp: %q", l)
		}
	}
	for _, want := range []string{"]: Launching bash bin/tool.sh > out.txt, Working dir: ", "]: cores=2 type=emerald k=v",
		"]: oops", "]: Launching ./compare.sh", "]: PASS", "]: Exited with code 0"} {
		if !strings.Contains(log, want) {
			t.Errorf("log has no %q:\n%s", want, log)
		}
	}
	runs := all[runJSON](h, "/api/v2/jobs/"+id+"/runs/")
	if len(runs) != 1 || len(runs[0].Variables) != 1 || runs[0].Variables[0].Name != "score" || runs[0].Variables[0].DisplayValue != "0.5" {
		t.Errorf("runs: %+v", runs)
	}
}

// TestExecutorCommandNotFound: a command that does not exist fails the job with exit code 127, and the
// emulator goes on serving.
func TestExecutorCommandNotFound(t *testing.T) {
	h := newExecHarness(t, 0)
	id := h.submit(jobBody("nf", "no-such-command-rescalefs", "", nil))
	if reason := h.waitCompleted(id); reason != ReasonRunFailed {
		t.Fatalf("reason %q", reason)
	}
	st := all[statusJSON](h, "/api/v2/jobs/"+id+"/statuses/")
	if st[1].Status != StatusStopping {
		t.Errorf("a failed job does not pass through Stopping: %+v", st)
	}
	log := h.outputs("/api/v2/jobs/" + id + "/files/")[processOutputLog]
	if !strings.Contains(log, "]: Exited with code 127\n") {
		t.Fatalf("log:\n%s", log)
	}
}

// TestExecutorWalltime: a command running past its walltime is killed and the job ends with the
// walltime reason.
func TestExecutorWalltime(t *testing.T) {
	h := newExecHarness(t, 300*time.Millisecond) // "1 hour" of walltime lasts 300ms
	id := h.submit(jobBody("wt", "echo start; sleep 60", "", nil))
	if reason := h.waitCompleted(id); reason != ReasonWalltime {
		t.Fatalf("reason %q", reason)
	}
	log := h.outputs("/api/v2/jobs/" + id + "/files/")[processOutputLog]
	// 143: bash killed by SIGTERM. (Whether "start" made it into the log first depends on the machine's
	// load, so it is not asserted.)
	if !strings.Contains(log, "Exited with code 143") {
		t.Fatalf("log:\n%s", log)
	}
}

// TestExecutorLiveAndStop: while the job runs its log is live through directory-contents and tail; a
// stop kills the whole process group (a background child too) and the job ends stopped by the user.
func TestExecutorLiveAndStop(t *testing.T) {
	h := newExecHarness(t, 0)
	id := h.submit(jobBody("stop", "sleep 300 & echo $! > bg.pid; echo running; wait", "", nil))
	testutil.Eventually(t, 20*time.Second, "the live log saying running", func() bool {
		resp, b := h.do(http.MethodGet, "/api/v2/jobs/"+id+"/runs/1/tail/process_output.log", nil)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(b), "]: running\n")
	})
	var entries []directoryEntryJSON
	h.getJSON("/api/v2/jobs/"+id+"/runs/1/directory-contents/", &entries)
	var paths []string
	for _, e := range entries {
		paths = append(paths, e.Path)
	}
	if !strings.Contains(strings.Join(paths, " "), "bg.pid") {
		t.Errorf("directory-contents: %v", paths)
	}
	pidText, err := os.ReadFile(filepath.Join(h.e.exec.dir, id, "run1", "bg.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
	if resp, b := h.do(http.MethodPost, "/api/v2/jobs/"+id+"/stop/", nil); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("stop: %d %s", resp.StatusCode, b)
	}
	if reason := h.waitCompleted(id); reason != ReasonUserStopped {
		t.Fatalf("reason %q", reason)
	}
	// The background sleep was in the process group: it is gone (or a zombie not yet reaped by init).
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("background child %d gone after the stop", pid), func() bool {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(stat), ") Z ") || syscall.Kill(pid, 0) != nil
	})
	if resp, _ := h.do(http.MethodGet, "/api/v2/jobs/"+id+"/runs/1/directory-contents/", nil); resp.StatusCode != liveGoneStatus {
		t.Errorf("directory-contents after the run: %d", resp.StatusCode)
	}
}

// TestExecutorDOE: one run per CSV row, `slots` at a time, templates filled with each row's values,
// each run's files under its own run.
func TestExecutorDOE(t *testing.T) {
	h := newExecHarness(t, 0)
	params := h.library("params.csv", []byte("x,name\n1.5,a\n2,b\n3.25,c\n"))
	tmpl := h.library("in.tmpl", []byte("x=${x?string(\"0.00\")} name=${name} keep=${other}\n"))
	body := jobBody("doe", "cat case/in.txt > result.txt", `printf 'seen\t%s\n' "$name"`,
		map[string]any{"templateTasks": []any{map[string]any{"templateFile": map[string]any{"id": tmpl}, "processedFilename": "case/in.txt"}}})
	body["paramFile"] = map[string]any{"id": params}
	body["jobanalyses"].([]any)[0].(map[string]any)["hardware"].(map[string]any)["slots"] = 2
	id := h.submit(body)
	if reason := h.waitCompleted(id); reason != ReasonSucceeded {
		t.Fatalf("reason %q", reason)
	}
	runs := all[runJSON](h, "/api/v2/jobs/"+id+"/runs/")
	if len(runs) != 3 {
		t.Fatalf("runs: %+v", runs)
	}
	want := []string{"x=1.50 name=a keep=${other}\n", "x=2.00 name=b keep=${other}\n", "x=3.25 name=c keep=${other}\n"}
	for i, r := range runs {
		out := h.outputs("/api/v2/jobs/" + id + "/runs/" + r.ID + "/files/")
		if out["result.txt"] != want[i] {
			t.Errorf("run %s result.txt = %q, want %q", r.ID, out["result.txt"], want[i])
		}
		if len(r.Variables) != 3 || r.Variables[0].Name != "x" || r.Variables[1].Name != "name" ||
			r.Variables[2].Name != "seen" || r.Variables[2].DisplayValue != r.Variables[1].DisplayValue {
			t.Errorf("run %s variables %+v", r.ID, r.Variables)
		}
	}
	if n := len(all[fileJSON](h, "/api/v2/jobs/"+id+"/files/")); n != 6 {
		t.Errorf("job files: %d, want 3 runs x (result.txt, process_output.log)", n)
	}
}

// TestJobScopes: v3 job calls count in the user scope, creation and submission in job-submission.
func TestJobScopes(t *testing.T) {
	h := newHarness(t, Options{Limits: map[string]int{ScopeJobSubmission: 2}})
	body, _ := json.Marshal(jobBody("a", "true", "", nil))
	post := func(path string) int {
		resp, _ := h.do(http.MethodPost, path, bytes.NewReader(body), "Content-Type", "application/json")
		return resp.StatusCode
	}
	if c := post("/api/v2/jobs/"); c != http.StatusCreated {
		t.Fatalf("first create: %d", c)
	}
	if c := post("/api/v3/jobs/"); c != http.StatusCreated {
		t.Fatalf("v3 create counts in job-submission: %d", c)
	}
	if c := post("/api/v2/jobs/"); c != http.StatusCreated {
		t.Fatalf("second v2 create: %d", c)
	}
	if c := post("/api/v2/jobs/"); c != http.StatusTooManyRequests {
		t.Fatalf("third v2 create: %d, want 429", c)
	}
	h2 := newHarness(t, Options{Limits: map[string]int{ScopeUser: 1}})
	if resp, _ := h2.do(http.MethodGet, "/api/v3/jobs/", nil); resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	if resp, _ := h2.do(http.MethodGet, "/api/v3/users/me/folders/", nil); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("v3 after the user limit: %d", resp.StatusCode)
	}
	if resp, _ := h2.do(http.MethodGet, "/api/v2/jobs/", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("v2 jobs counts in jobs-usage: %d", resp.StatusCode)
	}
}

// TestExecutorRestart: a job whose emulator went away while it executed ends failed, with a reason
// saying so, after a restart on the same data folder; a closed emulator leaves no process behind.
func TestExecutorRestart(t *testing.T) {
	data := t.TempDir()
	e, err := New(Options{DataDir: data, RunJobs: true, Lifecycle: quickLifecycle})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, e: e, srv: httptest.NewServer(e)}
	id := h.submit(jobBody("long", "echo $$ > pid; sleep 300", "", nil))
	var pid int
	testutil.Eventually(t, 20*time.Second, "the job started (its pid file)", func() bool {
		if b, err := os.ReadFile(filepath.Join(data, "work", id, "run1", "pid")); err == nil && bytes.HasSuffix(b, []byte("\n")) {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		return pid != 0
	})
	h.srv.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if syscall.Kill(pid, 0) == nil {
		if stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !strings.Contains(string(stat), ") Z ") {
			t.Fatalf("the job's process %d survived Close", pid)
		}
	}
	h2 := newHarness(t, Options{DataDir: data, RunJobs: true, Lifecycle: quickLifecycle, Now: time.Now})
	if reason := h2.waitCompleted(id); reason != ReasonEmulatorClosed {
		t.Fatalf("reason %q", reason)
	}
}

// TestExecutorStopBeforeStart: a stop that lands between a submit's commit and its executor start (two
// requests racing) is not lost: the job ends stopped by the user and its command never runs. The test
// builds that interleaving by hand: the state both requests leave, then the submit's start.
func TestExecutorStopBeforeStart(t *testing.T) {
	h := newExecHarness(t, 0)
	b, _ := json.Marshal(jobBody("race", "echo ran", "", nil))
	resp, rb := h.do(http.MethodPost, "/api/v2/jobs/", bytes.NewReader(b), "Content-Type", "application/json")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, rb)
	}
	var j struct{ ID string }
	if err := json.Unmarshal(rb, &j); err != nil {
		t.Fatal(err)
	}
	now := h.e.now()
	h.e.mu.Lock()
	nj := *h.e.st.jobs[j.ID]
	nj.Submitted, nj.Execute, nj.StopAt = now, true, now
	err := h.e.commitLocked(record{Job: &nj})
	h.e.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	h.e.exec.start(j.ID, now)
	if reason := h.waitCompleted(j.ID); reason != ReasonUserStopped {
		t.Fatalf("reason %q, want %q", reason, ReasonUserStopped)
	}
	if _, err := os.Stat(filepath.Join(h.e.exec.dir, j.ID, "run1", processOutputLog)); !os.IsNotExist(err) {
		t.Fatalf("the stopped job's command ran: %v", err)
	}
}

// TestExecutorEscapedChild: a command that starts a process outside its process group (setsid, a
// daemon) still ends: the run does not wait for that process to close the output it inherited. (The
// daemon writes its pid once it has its own session: the command ends only after that.)
func TestExecutorEscapedChild(t *testing.T) {
	h := newExecHarness(t, 0)
	id := h.submit(jobBody("daemon", "setsid bash -c 'echo $$ > daemon.pid; exec sleep 300' & until [ -s daemon.pid ]; do :; done; echo started", "", nil))
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(h.e.exec.dir, id, "run1", "daemon.pid")); err == nil {
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL) // the sleep this test started
			}
		}
	})
	if reason := h.waitCompleted(id); reason != ReasonSucceeded {
		t.Fatalf("reason %q", reason)
	}
	log := h.outputs("/api/v2/jobs/" + id + "/files/")[processOutputLog]
	if !strings.Contains(log, "]: started\n") || !strings.Contains(log, "left its process group") ||
		!strings.Contains(log, "]: Exited with code 0\n") {
		t.Fatalf("log:\n%s", log)
	}
}

// TestExecutorStoppedWhileStaging: a run whose job was stopped (or ran out of walltime) while its inputs
// were being staged does not launch its command at all.
func TestExecutorStoppedWhileStaging(t *testing.T) {
	h := newExecHarness(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := filepath.Join(t.TempDir(), "run1")
	ja := jobAnalysisSpec{Command: "touch launched", PostProcessScriptCommand: "touch post"}
	code, _ := h.e.exec.runIn(ctx, "job1", ja, runPlan{id: "1", dir: dir})
	if code == 0 {
		t.Errorf("exit code 0 for a run that never ran")
	}
	for _, f := range []string{"launched", "post"} {
		if _, err := os.Stat(filepath.Join(dir, f)); !os.IsNotExist(err) {
			t.Errorf("%s: the stopped run's command ran (%v)", f, err)
		}
	}
	log, err := os.ReadFile(filepath.Join(dir, processOutputLog))
	if err != nil || strings.Contains(string(log), "Launching") {
		t.Fatalf("log (%v):\n%s", err, log)
	}
}

// TestExecutorStopRun: POST .../runs/{run}/stop/ stops one run of a DOE, under way (its process group
// killed) or before its turn (its command never launched); the other runs go on and the job completes.
// A run already over is accepted and left alone; an unknown run is not found.
func TestExecutorStopRun(t *testing.T) {
	h := newExecHarness(t, 0)
	params := h.library("params.csv", []byte("x\n1\n2\n3\n"))
	body := jobBody("doe", `if [ "$x" = 2 ]; then echo waiting; sleep 300; fi; echo "$x" > result.txt`, "", nil)
	body["paramFile"] = map[string]any{"id": params}
	body["jobanalyses"].([]any)[0].(map[string]any)["hardware"].(map[string]any)["slots"] = 1
	id := h.submit(body)
	testutil.Eventually(t, 20*time.Second, "run 2 started (its log saying waiting)", func() bool {
		resp, b := h.do(http.MethodGet, "/api/v2/jobs/"+id+"/runs/2/tail/process_output.log", nil)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(b), "]: waiting\n")
	})
	for _, tc := range []struct {
		run  string
		want int
	}{
		{"9", http.StatusNotFound},
		{"1", http.StatusAccepted}, // over: nothing to do
		{"3", http.StatusAccepted}, // before its turn (one slot, run 2 holds it)
		{"2", http.StatusAccepted}, // under way
	} {
		if resp, b := h.do(http.MethodPost, "/api/v2/jobs/"+id+"/runs/"+tc.run+"/stop/", nil); resp.StatusCode != tc.want {
			t.Fatalf("stop run %s: %d %s, want %d", tc.run, resp.StatusCode, b, tc.want)
		}
	}
	if reason := h.waitCompleted(id); reason != ReasonRunFailed {
		t.Fatalf("reason %q, want %q (runs stopped)", reason, ReasonRunFailed)
	}
	for _, tc := range []struct {
		run, result, log string
	}{
		{"1", "1\n", "Exited with code 0"},
		{"2", "", "Run stopped by the user"},
		{"3", "", "Stopped before the command was launched"},
	} {
		out := h.outputs("/api/v2/jobs/" + id + "/runs/" + tc.run + "/files/")
		if out["result.txt"] != tc.result || !strings.Contains(out["process_output.log"], tc.log) {
			t.Errorf("run %s: result %q, log:\n%s\nwant result %q and %q", tc.run, out["result.txt"], out["process_output.log"], tc.result, tc.log)
		}
	}
	if n := h.e.Counters().Requests[EndpointRunStop]; n != 4 {
		t.Errorf("%d run stops counted, want 4", n)
	}
}
