package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// watchPlatform is an emulator whose jobs start running at once, with one long-running job.
func watchPlatform(t *testing.T) (*emulator.Emulator, string) {
	t.Helper()
	emu, err := emulator.New(emulator.Options{Lifecycle: emulator.Lifecycle{Pending: 50 * time.Millisecond,
		Queued: 50 * time.Millisecond, Started: 50 * time.Millisecond, Validated: 50 * time.Millisecond, Stopping: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	if _, err := emu.AddJob(emulator.JobSpec{ID: "Live1", Name: "running", RunFor: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := emu.AddJob(emulator.JobSpec{ID: "Done1", Name: "done", Files: []emulator.FileSpec{{RelativePath: "out/x.dat", Size: 5000}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv.URL
}

// mountForWatch mounts the platform with the real binary in the foreground and returns the mountpoint.
func mountForWatch(t *testing.T, emu *emulator.Emulator, url string) string {
	t.Helper()
	mnt := t.TempDir()
	noMountsLeftUnder(t, mnt)
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url},
		"mount", "--foreground", "--poll", "1s", mnt)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitInBackground(t, cmd)
	t.Cleanup(func() {
		if _, ok := mountedAt(mnt); ok {
			_ = exec.Command("fusermount3", "-u", mnt).Run()
		}
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Errorf("mount did not exit: %s", stderr.String())
		}
	})
	waitFor(t, func() bool { fstype, ok := mountedAt(mnt); return ok && fstype == "fuse.rescalefs" })
	return mnt
}

// watch runs `rescalefs status --watch` (plain lines: stdout is not a terminal) to its end, or kills
// it after a minute: a watch that never ends is the defect.
func watch(t *testing.T, mnt string) (string, error) {
	t.Helper()
	cmd := rescalefsCmd(t, nil, "status", "--watch", "--interval", "100ms", mnt)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitInBackground(t, cmd)
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		<-done
		return out.String(), errors.New("status --watch still running after a minute")
	}
}

// TestStatusWatchWaitsForSettle: --watch right after a cp into uploads/ follows the file through its
// settle window and its upload, and exits once the platform has it (it used to print one line and exit
// while the file was still settling).
func TestStatusWatchWaitsForSettle(t *testing.T) {
	emu, url := watchPlatform(t)
	mnt := mountForWatch(t, emu, url)
	src := filepath.Join(t.TempDir(), "settle-me.txt")
	if err := os.WriteFile(src, []byte(strings.Repeat("settle\n", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	copyInto(t, src, filepath.Join(mnt, "uploads"))
	out, err := watch(t, mnt)
	if err != nil {
		t.Fatalf("status --watch: %v: %s", err, out)
	}
	if !strings.Contains(out, "settling settle-me.txt") {
		t.Errorf("--watch never showed the file settling:\n%s", out)
	}
	// When --watch ends, the platform has the file: no waiting here.
	c, err := remote.New(remote.Options{BaseURL: url, APIKey: emu.APIKey()})
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.LibraryFiles(context.Background(), "settle-me.txt")
	if err != nil || len(files) != 1 {
		t.Fatalf("--watch ended before the upload was published: %d files, %v\n%s", len(files), err, out)
	}
}

// TestStatusLiveReads: a tail -f of a running job's live log is an open file in status (it said "0
// files open"), and --watch does not wait for it (it never exited while tail -f ran).
func TestStatusLiveReads(t *testing.T) {
	emu, url := watchPlatform(t)
	mnt := mountForWatch(t, emu, url)
	log := filepath.Join(mnt, "jobs", "Live1", "process_output.log")
	waitFor(t, func() bool { _, err := os.Stat(log); return err == nil })
	// And a completed job's file, read to its end and left open by another tail -f.
	tailDone1 := exec.Command("tail", "-f", filepath.Join(mnt, "jobs", "Done1", "out", "x.dat"))
	if err := tailDone1.Start(); err != nil {
		t.Fatal(err)
	}
	waitInBackground(t, tailDone1)
	t.Cleanup(func() { _ = tailDone1.Process.Signal(syscall.SIGTERM) })
	tail := exec.Command("tail", "-f", log)
	var tailOut bytes.Buffer
	tail.Stdout = &tailOut
	if err := tail.Start(); err != nil {
		t.Fatal(err)
	}
	tailDone := waitInBackground(t, tail)
	t.Cleanup(func() { _ = tail.Process.Signal(syscall.SIGTERM) })

	var status string
	waitFor(t, func() bool {
		out, err := rescalefsCmd(t, nil, "status", mnt).Output()
		status = string(out)
		return err == nil && strings.Contains(status, "2 files open") && strings.Contains(status, "live     process_output.log")
	})
	if !strings.Contains(status, "platform "+url+": last answered") {
		t.Errorf("status does not say when the platform last answered:\n%s", status)
	}
	out, err := watch(t, mnt)
	if err != nil {
		t.Fatalf("status --watch: %v: %s", err, out)
	}
	select {
	case err := <-tailDone:
		t.Fatalf("tail -f ended (%v) before --watch did: the test proves nothing", err)
	default:
	}
	if !strings.Contains(out, "live     process_output.log") {
		t.Errorf("--watch did not show the live file:\n%s", out)
	}
}
