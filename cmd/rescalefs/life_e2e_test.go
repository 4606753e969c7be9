package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// backgroundMount runs `rescalefs mount` (background) with args and returns the child's pid.
func backgroundMount(t *testing.T, env []string, args ...string) int {
	t.Helper()
	out, err := rescalefsCmd(t, env, append([]string{"mount"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mount %v: %v: %s", args, err, out)
	}
	m := regexp.MustCompile(`\(pid (\d+),`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("mount output %q names no pid", out)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	t.Cleanup(func() { waitGone(t, pid) })
	return pid
}

// `rescalefs unmount X && rescalefs mount X` with the same cache directory works while the platform is
// frozen: unmount returns only once the mount process has let go of everything (the cache-directory
// lock last), and that process does not wait on the frozen platform to do so.
func TestUnmountThenMountWhileFrozen(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	defer emu.SetFrozen(false)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	cacheDir := t.TempDir()
	creds := []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}
	logFile := filepath.Join(t.TempDir(), "log")
	backgroundMount(t, creds, "--poll", "1s", "--cache-dir", cacheDir, "--auth-timeout", "2s", "--log-level", "debug", "--log-file", logFile, mnt)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("first mount's log:\n%s", b)
		}
	})
	f := job.Files[1]
	if got := fileSHA512(t, filepath.Join(mnt, "jobs", job.ID, filepath.FromSlash(f.RelativePath))); got != f.SHA512 {
		t.Fatal("wrong bytes")
	}

	emu.SetFrozen(true)
	waitFor(t, func() bool { return emu.Holding() > 0 }) // a poll round is stuck on the platform
	// (A -race binary sleeps 1 s at exit: GORACE atexit_sleep_ms.)
	start := time.Now()
	if out, err := rescalefsCmd(t, nil, "unmount", mnt).CombinedOutput(); err != nil || len(out) != 0 {
		t.Fatalf("unmount: %v: %s", err, out)
	}
	t.Logf("unmount with a frozen platform took %v", time.Since(start).Round(time.Millisecond))
	backgroundMount(t, creds, "--poll", "1s", "--cache-dir", cacheDir, "--auth-timeout", "2s", mnt)

	emu.SetFrozen(false)
	remountServesThenUnmount(t, mnt, job.ID, f)
}

// A mount over a mount whose process was killed (kill -9 leaves it "transport endpoint is not
// connected") clears the stale mount, since it is ours, and mounts.
func TestRemountAfterKill(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	creds := []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}
	pid := backgroundMount(t, creds, "--poll", "1s", mnt)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
	// statfs, not stat: the kernel answers a stat of the root from its attribute cache for a while
	// even with the connection gone, while every statfs is a request, which a dead server's mount
	// fails (ENOTCONN, ECONNABORTED or EIO, depending on where the kernel was in tearing it down).
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err == nil {
		t.Fatal("the killed mount still answers statfs")
	}
	backgroundMount(t, creds, "--poll", "1s", mnt)
	remountServesThenUnmount(t, mnt, job.ID, job.Files[0])
}

// remountServesThenUnmount checks that the new mount at mnt serves f of job jobID with its bytes,
// then unmounts it.
func remountServesThenUnmount(t *testing.T, mnt, jobID string, f emulator.FileInfo) {
	t.Helper()
	if got := fileSHA512(t, filepath.Join(mnt, "jobs", jobID, filepath.FromSlash(f.RelativePath))); got != f.SHA512 {
		t.Fatal("wrong bytes after the remount")
	}
	if out, err := rescalefsCmd(t, nil, "unmount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("unmount: %v: %s", err, out)
	}
}

// A signal to a mount whose platform froze while a program reads a file: the read fails at once and
// the process lets everything go, instead of holding the mount (and the cache directory) for the
// network policy's budget (60 s by default) while the read waits. The shutdown order cancels the
// cache's fetches first (mountLife.stop), then waits.
func TestSignalWithReadStuckOnFrozenPlatform(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	defer emu.SetFrozen(false)
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	creds := []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}
	pid := backgroundMount(t, creds, "--poll", "1s", "--cache-dir", t.TempDir(), "--auth-timeout", "2s", mnt)
	f := job.Files[1]
	path := filepath.Join(mnt, "jobs", job.ID, filepath.FromSlash(f.RelativePath))
	if _, err := os.Stat(path); err != nil { // listed before the freeze: only the read waits on it
		t.Fatal(err)
	}
	emu.SetFrozen(true)
	before := emu.Holding()
	cat := exec.Command("cat", path)
	cat.Stdout = io.Discard
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	catDone := make(chan error, 1)
	go func() { catDone <- cat.Wait() }()
	t.Cleanup(func() { cat.Process.Kill(); <-catDone })
	waitFor(t, func() bool { return emu.Holding() > before }) // the read is stuck on the platform
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Well under the 60 s budget the read would otherwise wait (a -race binary sleeps 1 s at exit).
	const bound = 15 * time.Second
	select {
	case err := <-catDone:
		catDone <- err
		if err == nil {
			t.Error("cat of a file the frozen platform never sent succeeded")
		}
	case <-time.After(bound):
		t.Fatalf("the read stuck on the frozen platform still waits %v after the signal", bound)
	}
	if !processGone(pid, bound) {
		t.Fatalf("the mount process still runs %v after the signal", bound)
	}
	if _, ok := mountedAt(mnt); ok {
		t.Error("still mounted after the process exited")
	}
}
