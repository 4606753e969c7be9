package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountsUnder lists the mount points in /proc/mounts at or under dir (octal escapes such as \040 left
// as they are: the tests' folders have none).
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	var under []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			under = append(under, f[1])
		}
	}
	return under
}

// noMountsLeftUnder detaches, at cleanup, any mount a failed run left under dir (a dead FUSE mount
// breaks every program that walks the machine's mounts), and fails the test if there was one.
func noMountsLeftUnder(t *testing.T, dir string) {
	t.Cleanup(func() {
		for _, m := range mountsUnder(t, dir) {
			t.Errorf("%s still mounted at the end of the test; detaching", m)
			if out, err := exec.Command("fusermount3", "-u", "-z", m).CombinedOutput(); err != nil {
				t.Logf("fusermount3 -u -z %s: %v: %s", m, err, out)
			}
		}
	})
}

// brokenPipe returns the write end of a pipe whose read end is already closed: every write fails with
// EPIPE, as when `| head -1` has exited.
func brokenPipe(t *testing.T) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { w.Close() })
	return w
}

// TestDemoStdoutClosed: `rescalefs demo | head -1` used to die of SIGPIPE when it printed the tour and
// leave its FUSE mount behind, dead ("Transport endpoint is not connected"). A closed stdout must end
// the demo as Ctrl-C does (unmounted, its temporary folders removed), with exit 1 and the reason.
func TestDemoStdoutClosed(t *testing.T) {
	for _, tc := range []struct {
		name      string
		firstLine bool // the reader takes the first line, then exits (head -1); else it is gone from the start
	}{
		{"reader gone from the start", false},
		{"reader gone after the first line", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			noMountsLeftUnder(t, root)
			dir := filepath.Join(root, "rescale-demo")
			tmp := filepath.Join(root, "tmp")
			if err := os.Mkdir(tmp, 0o700); err != nil {
				t.Fatal(err)
			}
			cmd := rescalefsCmd(t, []string{"TMPDIR=" + tmp}, "demo", "--large-size", "1MiB", dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			var r *os.File
			if tc.firstLine {
				var w *os.File
				var err error
				if r, w, err = os.Pipe(); err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				cmd.Stdout = w
				defer w.Close()
			} else {
				cmd.Stdout = brokenPipe(t)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			if w, ok := cmd.Stdout.(*os.File); ok {
				w.Close() // the child holds its own copy
			}
			done := waitInBackground(t, cmd)
			if tc.firstLine {
				line, err := bufio.NewReader(r).ReadString('\n')
				if err != nil {
					t.Fatalf("first line: %v: %s", err, stderr.String())
				}
				t.Logf("first line: %q", line)
				r.Close() // head -1 has what it wanted
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("demo still running 60s after its stdout was closed: %s", stderr.String())
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("exit: %v, want exit status 1: %s", err, stderr.String())
			}
			if ws := exit.Sys().(syscall.WaitStatus); ws.Signaled() || ws.ExitStatus() != exitFailure {
				t.Fatalf("exit: %v, want exit status 1 (not killed by a signal): %s", err, stderr.String())
			}
			if !strings.Contains(stderr.String(), "rescalefs demo: standard output closed") {
				t.Errorf("stderr does not say why the demo stopped: %s", stderr.String())
			}
			// After the first line the demo goes on to mount; the tour's lines are what fail.
			if tc.firstLine && !strings.Contains(stderr.String(), "msg=unmounting") {
				t.Errorf("the demo did not mount and unmount: %s", stderr.String())
			}
			if m := mountsUnder(t, root); len(m) > 0 {
				t.Errorf("mounts left after the demo exited: %v", m)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("demo left its mountpoint folder: %v", err)
			}
			if left, err := os.ReadDir(tmp); err != nil || len(left) > 0 {
				t.Errorf("demo left temporary folders (cache, profile): %v %v", left, err)
			}
		})
	}
}

// TestForegroundMountStderrClosed: a foreground mount whose log goes to a closed pipe
// (`rescalefs mount --foreground M 2>&1 | head -1`) used to die of SIGPIPE at its first log line,
// leaving a dead mount. A mount is a service: its log's reader going away must not end it, and SIGTERM
// still unmounts it cleanly.
func TestForegroundMountStderrClosed(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	root := t.TempDir()
	noMountsLeftUnder(t, root)
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}, "mount", "--foreground", mnt)
	cmd.Stdout, cmd.Stderr = brokenPipe(t), brokenPipe(t)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitInBackground(t, cmd)
	// Listing the job, then reading a file, makes the mount log while serving.
	path := filepath.Join(mnt, "jobs", job.ID, "process_output.log")
	waitFor(t, func() bool {
		select {
		case err := <-done:
			t.Fatalf("the mount exited while serving: %v", err)
		default:
		}
		_, err := os.ReadFile(path)
		return err == nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Errorf("mounts left after SIGTERM: %v", m)
	}
}
