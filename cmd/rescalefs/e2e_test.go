package main

import (
	"bufio"
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"io"
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

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// These tests run the real binary: the test binary re-executes itself as rescalefs when
// beAsRescalefs is set (and a background mount's child does the same, since it inherits the variable).
const beAsRescalefs = "RESCALEFS_TEST_BE_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(beAsRescalefs) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// rescalefsCmd prepares the binary with a private home, cache and log, and the given credentials.
func rescalefsCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), beAsRescalefs+"=1", "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
		"XDG_STATE_HOME="+filepath.Join(home, "state"), "RESCALE_API_KEY=", "RESCALE_API_URL=")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// waitGone waits for a process we started (and released) to exit. Once it is gone its pid may be
// reused, so anything at pid that is not this test binary counts as gone and is never signalled.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || !bytes.HasPrefix(cmdline, []byte(self+"\x00")) {
			return
		}
		// A released child that exited stays a zombie until reaped; that counts as gone.
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(b), ") Z ") {
			return
		}
	}
	t.Errorf("process %d still running after unmount", pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

func newEmulatorWithJob(t *testing.T) (*emulator.Emulator, string, emulator.Job) {
	t.Helper()
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := emu.AddJob(emulator.JobSpec{Name: "e2e job", Files: []emulator.FileSpec{
		{RelativePath: "process_output.log", Size: 5000, Seed: 1},
		{RelativePath: "case/result.bin", Size: 3<<20 + 7, Seed: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv.URL, job
}

func fileSHA512(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestBackgroundMount: `rescalefs mount` returns once the mount serves, the key is not on the child's
// command line, reads are right, and `rescalefs unmount` ends the child.
func TestBackgroundMount(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}, "mount", "--poll", "1s", mnt)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	m := regexp.MustCompile(`\(pid (\d+),`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("mount output %q names no pid", out)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	t.Cleanup(func() { waitGone(t, pid) })

	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(cmdline, []byte(emu.APIKey())) {
		t.Fatal("the API key is on the mount process's command line")
	}
	for _, f := range job.Files {
		got := fileSHA512(t, filepath.Join(mnt, "jobs", job.ID, filepath.FromSlash(f.RelativePath)))
		if got != f.SHA512 {
			t.Errorf("%s: sha512 %s, want %s", f.RelativePath, got[:16], f.SHA512[:16])
		}
	}

	// A second mount of the same folder is refused: it is mounted now.
	again := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}, "mount", mnt)
	if out, err := again.CombinedOutput(); err == nil || !strings.Contains(string(out), "already mounted") {
		t.Errorf("second mount: %v: %s", err, out)
	}

	if out, err := rescalefsCmd(t, nil, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v: %s", err, out)
	}
	if _, ok := mountedAt(mnt); ok {
		t.Fatal("still mounted after rescalefs unmount")
	}
}

// TestForegroundSignal: SIGTERM to a foreground mount unmounts it and exits 0.
func TestForegroundSignal(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	var stderr bytes.Buffer
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}, "mount", "--foreground", mnt)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := waitInBackground(t, cmd)
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(mnt, "jobs", job.ID)); return err == nil })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v: %s", err, stderr.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if _, ok := mountedAt(mnt); ok {
		t.Fatal("still mounted after SIGTERM")
	}
	if strings.Contains(stderr.String(), emu.APIKey()) {
		t.Fatal("the log shows the API key")
	}
}

// TestDemo is the README's first command: it mounts, `cp -r` of a job works, Ctrl-C leaves nothing.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rescale-demo")
	noMountsLeftUnder(t, dir)
	cmd := rescalefsCmd(t, nil, "demo", "--large-size", "8MiB", dir)
	var stderr bytes.Buffer
	tour, submit, done := startDemo(t, cmd, &stderr, 60*time.Second)
	checkTour(t, dir, tour)
	profile := checkTourSubmit(t, submit)
	completed, err := os.ReadDir(filepath.Join(dir, "completed"))
	if err != nil || len(completed) == 0 {
		t.Fatalf("completed/: %v, %d entries", err, len(completed))
	}
	dst := t.TempDir()
	src := filepath.Join(dir, "jobs", completed[0].Name())
	if out, err := exec.Command("cp", "-r", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -r: %v: %s", err, out)
	}
	if out, err := exec.Command("diff", "-r", src, filepath.Join(dst, completed[0].Name())).CombinedOutput(); err != nil {
		t.Fatalf("diff -r after cp -r: %v: %s", err, out)
	}
	stopDemo(t, cmd, done, &stderr, 20*time.Second)
	if _, ok := mountedAt(dir); ok {
		t.Fatal("demo left its mount behind")
	}
	if _, err := os.Stat(filepath.Dir(profile)); !os.IsNotExist(err) {
		t.Errorf("demo left its profile folder: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("demo left its mountpoint folder: %v", err)
	}
}

// startDemo starts a `rescalefs demo` cmd, its log into stderr, and waits up to within for its
// "Press Ctrl-C" line. It returns the tour's commands as printed (the "  cmd # why" lines), the tour's
// `rescalefs submit` line (printed on its own), and the demo's exit.
func startDemo(t *testing.T, cmd *exec.Cmd, stderr *bytes.Buffer, within time.Duration) (tour []string, submit string, done <-chan error) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready, scanned := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Press Ctrl-C") {
				close(ready)
				break
			}
			if strings.HasPrefix(sc.Text(), "  rescalefs submit ") {
				submit = strings.TrimSpace(sc.Text())
			}
			if c, _, ok := strings.Cut(sc.Text(), " # "); ok && strings.HasPrefix(c, "  ") {
				tour = append(tour, strings.TrimSpace(c))
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // read to EOF before Wait closes the pipe
	}()
	done = waitInBackground(t, cmd, scanned)
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("demo exited: %v: %s", err, stderr.String())
	case <-time.After(within):
		t.Fatalf("demo not ready in %v: %s", within, stderr.String())
	}
	return tour, submit, done
}

// stopDemo sends the demo Ctrl-C and fails unless it exits 0 within the time given.
func stopDemo(t *testing.T, cmd *exec.Cmd, done <-chan error, stderr *bytes.Buffer, within time.Duration) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exit: %v: %s", err, stderr.String())
		}
	case <-time.After(within):
		t.Fatal("demo did not stop on Ctrl-C")
	}
}

// waitInBackground waits for a started cmd (after the channels in first are closed) and sends its
// exit once; if the test ends before the process did, its cleanup kills and reaps it.
func waitInBackground(t *testing.T, cmd *exec.Cmd, first ...<-chan struct{}) <-chan error {
	done := make(chan error, 1)
	exited := make(chan struct{})
	go func() {
		for _, c := range first {
			<-c
		}
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return done
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 20s")
}

// TestAutoDownload: a mount with --auto-download copies a completed job's outputs into DIR/<jobId>/,
// byte for byte, and reports it in the status file.
func TestAutoDownload(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	noMountsLeftUnder(t, mnt)
	var stderr bytes.Buffer
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url},
		"mount", "--foreground", "--poll", "1s", "--auto-download", dest, mnt)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	for _, f := range job.Files {
		path := filepath.Join(dest, job.ID, filepath.FromSlash(f.RelativePath))
		waitFor(t, func() bool { _, err := os.Stat(path); return err == nil })
		if got := fileSHA512(t, path); got != f.SHA512 {
			t.Errorf("%s: downloaded sha512 %s, want %s", f.RelativePath, got[:16], f.SHA512[:16])
		}
	}
	status, err := os.ReadFile(filepath.Join(mnt, ".rescalefs", "status"))
	if err != nil || !bytes.Contains(status, []byte(`"autoDownload"`)) || !bytes.Contains(status, []byte(job.ID)) {
		t.Errorf("status file does not report the download: %v\n%s", err, status)
	}
	// rescalefs status shows it too, and the job ends done.
	var out []byte
	waitFor(t, func() bool {
		out, _ = rescalefsCmd(t, nil, "status", mnt).CombinedOutput()
		return bytes.Contains(out, []byte("auto-download to "+dest)) &&
			regexp.MustCompile(`job +`+job.ID+` +done +2/2 files`).Match(out)
	})
}

func TestAutoDownloadFlags(t *testing.T) {
	emu, url, _ := newEmulatorWithJob(t)
	env := map[string]string{"RESCALE_API_KEY": emu.APIKey(), "RESCALE_API_URL": url}
	mnt := t.TempDir()
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"mount", "-f", "--auto-query", ".log", mnt}, "--auto-query needs --auto-download DIR"},
		{[]string{"mount", "-f", "--auto-download", filepath.Join(mnt, "out"), mnt}, "is inside the mountpoint"},
	} {
		code, _, stderr := runCmd(t, env, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.wantErr) {
			t.Errorf("%v: code %d, stderr %q; want %d and %q", tc.args, code, stderr, exitUsage, tc.wantErr)
		}
	}
}

// checkTour: the demo's tour names real things. Every path it prints under the mount exists (a running
// job's log may wait for its run to start: its folder exists), and the lines that read something read
// what they promise.
func checkTour(t *testing.T, mnt string, tour []string) {
	t.Helper()
	if len(tour) < 10 {
		t.Fatalf("the tour has %d lines: %q", len(tour), tour)
	}
	var paths int
	for _, line := range tour {
		if strings.Contains(line, "<") {
			t.Errorf("tour line with a placeholder: %q", line)
		}
		for _, w := range strings.Fields(line) {
			if !strings.HasPrefix(w, mnt+"/") {
				continue
			}
			paths++
			p := w
			if strings.HasPrefix(line, "tail -F") {
				p = filepath.Dir(w)
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("tour line %q: %v", line, err)
			}
		}
	}
	if paths < 10 {
		t.Errorf("the tour names %d paths in the mount: %q", paths, tour)
	}
	for _, want := range []struct{ prefix, output string }{
		{"find ", "/@"},       // the @ filter matches some files
		{"tail -3 ", "FATAL"}, // the failed job's log says why
		{"ls -l " + mnt + "/files", ".msh"},
	} {
		var line string
		for _, l := range tour {
			if strings.HasPrefix(l, want.prefix) {
				line = l
				break
			}
		}
		if line == "" {
			t.Errorf("no tour line starts with %q", want.prefix)
			continue
		}
		out, err := exec.Command("bash", "-c", line).CombinedOutput()
		if err != nil || !strings.Contains(string(out), want.output) {
			t.Errorf("%s: %v, output %q lacks %q", line, err, out, want.output)
		}
	}
	for _, section := range []string{"/completed", "/failed/", "/files", "/uploads/", "status --watch", "/by-name", "cp -r "} {
		if !strings.Contains(strings.Join(tour, "\n"), section) {
			t.Errorf("the tour never mentions %q", section)
		}
	}
}

// checkTourSubmit runs the tour's `rescalefs submit` line as printed (rescalefs being this binary): the
// demo's regression suite runs as a job and passes. Its apiconfig is private to the user; its path is
// returned, so the caller can see the demo remove it.
func checkTourSubmit(t *testing.T, line string) string {
	t.Helper()
	m := regexp.MustCompile(`--config (\S+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no submit line with --config in the tour: %q", line)
	}
	profile := m[1]
	for p, want := range map[string]os.FileMode{profile: 0o600, filepath.Dir(profile): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v, mode %v; want %v", p, err, fi.Mode().Perm(), want)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", `rescalefs() { "$REXE" "$@"; }; `+line)
	cmd.Env = append(os.Environ(), beAsRescalefs+"=1", "REXE="+self, "RESCALE_API_KEY=", "RESCALE_API_URL=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "passed 2 of 2") {
		t.Fatalf("the tour's submit line: %v\n%s", err, out)
	}
	return profile
}
