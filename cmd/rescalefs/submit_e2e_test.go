package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// These tests run the built binary against `rescalefs emulator --run-jobs` (also the binary): the
// regression-testing workflow of issue 10 end to end, with the demo's regression suite.

type emuProc struct {
	url, key string
	env      []string
}

// startRunJobsEmulator runs `rescalefs emulator --run-jobs` and returns its URL and key; it is stopped
// with SIGTERM at cleanup.
func startRunJobsEmulator(t *testing.T, extra ...string) emuProc {
	t.Helper()
	args := append([]string{"emulator", "--run-jobs", "--queue-time", "0", "--work-dir", t.TempDir()}, extra...)
	cmd := rescalefsCmd(t, nil, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(stdout)
	line, err := br.ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("emulator: %v: %s", err, stderr.String())
	}
	go io.Copy(io.Discard, br)
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	var p emuProc
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "RESCALE_API_URL="); ok {
			p.url = v
		}
		if v, ok := strings.CutPrefix(f, "RESCALE_API_KEY="); ok {
			p.key = v
		}
	}
	p.env = []string{"RESCALE_API_URL=" + p.url, "RESCALE_API_KEY=" + p.key}
	return p
}

func (p emuProc) stats(t *testing.T) emulator.Counters {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url+"/_emulator/stats", nil)
	req.Header.Set("Authorization", "Token "+p.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c emulator.Counters
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// api GETs an API path and decodes the JSON answer.
func (p emuProc) api(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url+path, nil)
	req.Header.Set("Authorization", "Token "+p.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// uploads counts the requests that send file bytes to the platform.
func uploads(c emulator.Counters) int64 {
	return c.Requests[emulator.EndpointUpload] + c.Requests[emulator.EndpointRegister] + c.Requests[emulator.EndpointS3Put] +
		c.Requests[emulator.EndpointS3UploadPart]
}

// suiteDir writes the regression suite into a temp dir.
func suiteDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := writeRegressionSuite(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// submit runs `rescalefs submit args...` in dir and returns its exit code and output.
func (p emuProc) submit(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := rescalefsCmd(t, p.env, append([]string{"submit"}, args...)...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// suiteArgs submits the suite: the build archives given (default the base build), then the tests and the
// compare script.
func suiteArgs(builds ...string) []string {
	if len(builds) == 0 {
		builds = []string{"build.tar.gz"}
	}
	var args []string
	for _, b := range append(builds, "tests.tar.gz", "compare.sh") {
		args = append(args, "--input", b)
	}
	return append(args, "--core-type", "Marble", "--command", "bash run_tests.sh", "--post-command", "./compare.sh",
		"--fail-on", "^FAILURE", "--wait", "--poll", "100ms")
}

// TestSubmitRegressionSuite: the seed's workflow. Build, tests and compare script go up once and are
// reused; --follow shows the log and the compare summary; a delta after the base overrides its file;
// a broken delta fails with the FAILURE lines shown.
func TestSubmitRegressionSuite(t *testing.T) {
	emu := startRunJobsEmulator(t)
	dir := suiteDir(t)

	code, out, errs := emu.submit(t, dir, append([]string{"--follow", "--name", "first"}, suiteArgs()...)...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"input build.tar.gz: sent as file", "input tests.tar.gz: sent as file",
		"input compare.sh: sent as file", ": Executing", "]: echoware 1.0", "]: ran hello", "]: PASS hello",
		"]: passed 2 of 2", "Completed (Completed successfully)", "completed successfully (exit 0)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output has no %q:\n%s", want, out)
		}
	}
	// The summary comes after the test run in the output: post-processing output follows the command's.
	if i, j := strings.Index(out, "]: ran world"), strings.Index(out, "]: passed 2 of 2"); i < 0 || j < i {
		t.Errorf("the compare summary does not follow the tests:\n%s", out)
	}
	before := emu.stats(t)

	// Again: nothing is sent, the library files are reused.
	code, out, errs = emu.submit(t, dir, append([]string{"--name", "again"}, suiteArgs()...)...)
	if code != 0 || strings.Count(out, "reused library file") != 3 || strings.Contains(out, "sent as file") {
		t.Fatalf("second submit: exit %d\n%s\n%s", code, out, errs)
	}
	if after := emu.stats(t); uploads(after) != uploads(before) {
		t.Fatalf("the second submit uploaded: %d upload requests before, %d after", uploads(before), uploads(after))
	}

	// An incremental delta listed after the base overrides bin/echoware.
	dl := t.TempDir()
	code, out, errs = emu.submit(t, dir, append([]string{"--name", "delta", "--follow", "--download", dl, "--query", "version"},
		suiteArgs("build.tar.gz", "delta.tar.gz")...)...)
	if code != 0 || !strings.Contains(out, "]: echoware 1.1") || strings.Contains(out, "echoware 1.0") {
		t.Fatalf("delta: exit %d\n%s\n%s", code, out, errs)
	}
	id := regexp.MustCompile(`job (\w+) \(delta\): submitted`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no job id in\n%s", out)
	}
	var files struct {
		Results []struct {
			ID           string `json:"id"`
			RelativePath string `json:"relativePath"`
		} `json:"results"`
	}
	emu.api(t, "/api/v2/jobs/"+id[1]+"/files/", &files)
	var version string
	for _, f := range files.Results {
		if f.RelativePath == "results/version.txt" {
			version = emu.contents(t, f.ID)
		}
	}
	if version != "echoware 1.1\n" {
		t.Fatalf("results/version.txt of the delta job = %q (outputs %+v)", version, files.Results)
	}
	// --download --query fetched that file, and only the matching ones.
	if b, err := os.ReadFile(filepath.Join(dl, id[1], "results", "version.txt")); err != nil || string(b) != version {
		t.Fatalf("downloaded version.txt: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(dl, id[1], "results", "hello.out")); !os.IsNotExist(err) {
		t.Fatalf("--query version downloaded hello.out: %v", err)
	}

	// A regression: the compare script prints FAILURE and exits 0; --fail-on makes it exit 3.
	code, out, errs = emu.submit(t, dir, append([]string{"--name", "broken"}, suiteArgs("build.tar.gz", "delta-broken.tar.gz")...)...)
	if code != 3 || !strings.Contains(out, "FAILURE hello: results/hello.out differs") || !strings.Contains(out, "match --fail-on (exit 3)") {
		t.Fatalf("broken delta: exit %d, want 3\n%s\n%s", code, out, errs)
	}
}

func (p emuProc) contents(t *testing.T, id string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url+"/api/v2/files/"+id+"/contents/", nil)
	req.Header.Set("Authorization", "Token "+p.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestSubmitMatrix: three rescale-cli scripts at once (one failing) end with a summary table, JUnit XML
// and the worst exit code; --run-id a second time attaches instead of creating the jobs again.
func TestSubmitMatrix(t *testing.T) {
	emu := startRunJobsEmulator(t)
	dir := suiteDir(t)
	scripts := map[string]string{
		"short.sh":  "#!/bin/bash\n#RESCALE_NAME=short\n#RESCALE_CORE_TYPE=Marble\n#RESCALE_CORES=2\n#RESCALE_WALLTIME=1\n#RESCALE_ENV_SUITE=short\necho suite=$SUITE cores=$RESCALE_CORES_PER_SLOT\nbash run_tests.sh\n",
		"long_a.sh": "#!/bin/bash\n#RESCALE_CORE_TYPE=standard-plus\n#RESCALE_WALLTIME=2\nbash run_tests.sh\n",
		"long_b.sh": "#!/bin/bash\n#RESCALE_CORE_TYPE=Marble\n#RESCALE_LOW_PRIORITY=true\nbash run_tests.sh\necho a long test failed\nexit 2\n",
	}
	for n, s := range scripts {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	junit := filepath.Join(t.TempDir(), "junit.xml")
	args := []string{"--input", "build.tar.gz", "--input", "tests.tar.gz", "--input", "compare.sh",
		"--post-command", "./compare.sh", "--wait", "--poll", "100ms", "--run-id", "ci-42", "--junit", junit,
		"short.sh", "long_a.sh", "long_b.sh"}
	code, out, errs := emu.submit(t, dir, args...)
	if code != 3 {
		t.Fatalf("matrix: exit %d, want 3 (the worst)\n%s\n%s", code, out, errs)
	}
	table := regexp.MustCompile(`(?m)^JOB +ID +STATUS +EXIT +DURATION +CORE HOURS`)
	if !table.MatchString(out) || !regexp.MustCompile(`(?m)^short \[run-id ci-42\] +\w+ +Completed +0 `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^long_b \[run-id ci-42\] +\w+ +Completed +3 `).MatchString(out) {
		t.Fatalf("summary:\n%s", out)
	}
	created := emu.stats(t).Requests[emulator.EndpointJobCreate]
	if created != 3 {
		t.Fatalf("%d jobs created, want 3", created)
	}
	// The directives reached the job: name, cores, env, low priority.
	var jobs struct {
		Results []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"results"`
	}
	emu.api(t, "/api/v2/jobs/", &jobs)
	for _, j := range jobs.Results {
		var d struct {
			IsLowPriority bool `json:"isLowPriority"`
			JobAnalyses   []struct {
				Command  string            `json:"command"`
				EnvVars  map[string]string `json:"envVars"`
				Hardware struct {
					CoreType     string `json:"coreType"`
					CoresPerSlot int    `json:"coresPerSlot"`
					Walltime     int    `json:"walltime"`
				} `json:"hardware"`
			} `json:"jobanalyses"`
		}
		emu.api(t, "/api/v2/jobs/"+j.ID+"/", &d)
		ja := d.JobAnalyses[0]
		if ja.Command != "./run.sh" || ja.Hardware.CoreType != "standard-plus" {
			t.Errorf("%s: %+v", j.Name, d)
		}
		switch {
		case strings.HasPrefix(j.Name, "short "):
			if ja.Hardware.CoresPerSlot != 2 || ja.Hardware.Walltime != 1 || ja.EnvVars["SUITE"] != "short" {
				t.Errorf("short: directives lost: %+v", d)
			}
		case strings.HasPrefix(j.Name, "long_b "):
			if !d.IsLowPriority {
				t.Errorf("long_b: #RESCALE_LOW_PRIORITY lost")
			}
		}
	}
	var doc struct {
		XMLName xml.Name `xml:"testsuites"`
		Tests   int      `xml:"tests,attr"`
		Suites  []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Text string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &doc); err != nil || doc.Tests != 3 || len(doc.Suites[0].Cases) != 3 {
		t.Fatalf("junit: %v\n%s", err, b)
	}
	failures := 0
	for _, c := range doc.Suites[0].Cases {
		if c.Failure != nil {
			failures++
			if !strings.Contains(c.Failure.Text, "Exited with code 2") || !strings.Contains(c.Failure.Text, "a long test failed") {
				t.Errorf("failure text: %q", c.Failure.Text)
			}
		}
	}
	if failures != 1 {
		t.Fatalf("junit failures %d, want 1:\n%s", failures, b)
	}

	// A retried CI step: the same --run-id attaches to the three jobs.
	code, out, errs = emu.submit(t, dir, args...)
	if code != 3 || strings.Count(out, "found by --run-id ci-42: attaching") != 3 {
		t.Fatalf("retry: exit %d\n%s\n%s", code, out, errs)
	}
	if n := emu.stats(t).Requests[emulator.EndpointJobCreate]; n != created {
		t.Fatalf("the retry created jobs: %d creates, want %d", n, created)
	}
}

// TestSubmitStops: --timeout and SIGTERM each stop the job (the emulator saw the stop) and exit 4.
func TestSubmitStops(t *testing.T) {
	emu := startRunJobsEmulator(t)
	dir := t.TempDir()
	base := []string{"--core-type", "Marble", "--command", "echo started; sleep 120", "--wait", "--follow", "--poll", "100ms"}

	code, out, errs := emu.submit(t, dir, append([]string{"--name", "slow", "--timeout", "1s"}, base...)...)
	if code != 4 || !strings.Contains(out, "--timeout 1s reached: stopping it") || !strings.Contains(out, "Job stopped by user") {
		t.Fatalf("--timeout: exit %d, want 4\n%s\n%s", code, out, errs)
	}
	if n := emu.stats(t).Requests[emulator.EndpointJobStop]; n != 1 {
		t.Fatalf("stops seen: %d, want 1", n)
	}

	cmd := rescalefsCmd(t, emu.env, append([]string{"submit", "--name", "signalled"}, base...)...)
	cmd.Dir = dir
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex // guards seen
	var seen strings.Builder
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			seen.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "]: started") {
				once.Do(func() { close(started) })
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); pw.Close() }()
	select {
	case <-started:
	case err := <-exited:
		t.Fatalf("submit ended before the job started: %v\n%s", err, errb.String())
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("the job did not start in 30s")
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("no exit after SIGTERM")
	}
	mu.Lock()
	got := seen.String()
	mu.Unlock()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 || !strings.Contains(got, "interrupted: stopping it") {
		t.Fatalf("SIGTERM: %v, want exit 4\n%s\n%s", err, got, errb.String())
	}
	if n := emu.stats(t).Requests[emulator.EndpointJobStop]; n != 2 {
		t.Fatalf("stops seen: %d, want 2", n)
	}
}

// TestSubmitBadInput: each mistake is one clear line and exit 2, and nothing reaches the platform's
// job or upload endpoints; a command that does not exist fails the job (exit 3), not the emulator.
func TestSubmitBadInput(t *testing.T) {
	emu := startRunJobsEmulator(t)
	dir := suiteDir(t)
	if err := os.WriteFile(filepath.Join(dir, "bad.sh"), []byte("#!/bin/bash\n#RESCALE_CORE_TYPE=Marble\n#RESCALE_CORES=four\necho\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown core type", []string{"--core-type", "Marbel", "--command", "true", "--input", "build.tar.gz"}, `unknown core type "Marbel"; closest: standard-plus (Marble)`},
		{"walltime required", []string{"--core-type", "Onyx", "--command", "true", "--input", "build.tar.gz"}, "requires a walltime"},
		{"missing input", []string{"--core-type", "Marble", "--command", "true", "--input", "nope.tar.gz"}, "--input nope.tar.gz: no such file or directory"},
		{"bad directive", []string{"bad.sh"}, "script bad.sh: line 3: #RESCALE_CORES=four: want a positive number of cores"},
		{"unknown analysis", []string{"--core-type", "Marble", "--analysis", "openfom", "--command", "true"}, `unknown analysis "openfom"; closest: openfoam`},
		{"max cost", []string{"--core-type", "Marble", "--cores", "32", "--walltime", "100", "--max-cost", "10", "--command", "true"}, "estimated cost 288.00"},
	} {
		code, out, errs := emu.submit(t, dir, tc.args...)
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if code != 2 || len(lines) != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q (stdout %q); want 2 and one line with %q", tc.name, code, errs, out, tc.want)
		}
	}
	c := emu.stats(t)
	if c.Requests[emulator.EndpointJobCreate] != 0 || uploads(c) != 0 {
		t.Fatalf("bad input reached the platform: %v", c.Requests)
	}

	code, out, errs := emu.submit(t, dir, "--core-type", "Marble", "--command", "no-such-command-rescalefs", "--wait", "--poll", "100ms")
	if code != 3 || !strings.Contains(out, "exited with code 127") {
		t.Fatalf("command not found: exit %d, want 3\n%s\n%s", code, out, errs)
	}
}

// TestSubmitDOE: a parameter table of 5 rows and a template give 5 runs, `--slots` at a time; JUnit has
// one test case per run, and the mount shows run1..run5 with their variables as attributes.
func TestSubmitDOE(t *testing.T) {
	emu := startRunJobsEmulator(t)
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("params.csv", "speed,mesh\n10,coarse\n20,coarse\n30,fine\n40,fine\n50,fine\n")
	write("case.tmpl", "speed=${speed?string(\"0.0\")}\nmesh=${mesh}\n")
	junit := filepath.Join(t.TempDir(), "doe.xml")
	code, out, errs := emu.submit(t, dir, "--name", "sweep", "--core-type", "Marble", "--doe-params", "params.csv",
		"--template", "case.tmpl:case/input.txt", "--slots", "2", "--command", "cat case/input.txt > result.txt",
		"--post-command", `printf 'drag\t%s\n' "$((speed * 2))"`, "--wait", "--poll", "100ms", "--junit", junit)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	b, _ := os.ReadFile(junit)
	for i, s := range []string{"10", "20", "30", "40", "50"} {
		if !strings.Contains(string(b), fmt.Sprintf(`name="sweep/run%d (speed=%s, mesh=`, i+1, s)) {
			t.Errorf("junit has no test case for run %d:\n%s", i+1, b)
		}
	}
	if !strings.Contains(out, "run 4 (speed=40, mesh=fine, drag=80): completed successfully (exit 0)") {
		t.Errorf("no line for run 4:\n%s", out)
	}
	id := regexp.MustCompile(`job (\w+) \(sweep\): submitted`).FindStringSubmatch(out)
	if id == nil {
		t.Fatalf("no job id:\n%s", out)
	}

	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	if out, err := rescalefsCmd(t, emu.env, "mount", "--poll", "1s", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := rescalefsCmd(t, nil, "unmount", mnt).CombinedOutput(); err != nil {
			t.Errorf("unmount: %v: %s", err, out)
		}
	})
	jobDir := filepath.Join(mnt, "jobs", id[1])
	entries, err := os.ReadDir(jobDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if err != nil || strings.Join(names, " ") != "run1 run2 run3 run4 run5" {
		t.Fatalf("jobs/%s: %v %v", id[1], names, err)
	}
	got, err := os.ReadFile(filepath.Join(jobDir, "run3", "result.txt"))
	if err != nil || string(got) != "speed=30.0\nmesh=fine\n" {
		t.Fatalf("run3/result.txt = %q, %v", got, err)
	}
	xattr := func(path, name string) string {
		buf := make([]byte, 256)
		n, err := syscall.Getxattr(path, name, buf)
		if err != nil {
			t.Fatalf("getxattr %s %s: %v", path, name, err)
		}
		return string(buf[:n])
	}
	if s, d := xattr(filepath.Join(jobDir, "run4"), "user.rescale.speed"), xattr(filepath.Join(jobDir, "run4"), "user.rescale.drag"); s != "40" || d != "80" {
		t.Fatalf("run4 variables: speed %q drag %q", s, d)
	}
}
