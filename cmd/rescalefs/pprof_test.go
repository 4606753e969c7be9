package main

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestPprofStopsWithTheMount: the RESCALEFS_PPROF server is one of the mount's parts, stopped by its
// owner (mountLife) at unmount. It used to be started with a bare http.Serve nobody stopped, so it
// outlived the mount: serveMount returned with the profiles still answering and its goroutine running.
// The mount runs in this process (run, as main does) so the test can see what outlives it.
func TestPprofStopsWithTheMount(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	root := t.TempDir()
	noMountsLeftUnder(t, root)
	mnt := filepath.Join(root, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(pprofEnv, "127.0.0.1:0")
	t.Setenv("RESCALE_API_KEY", emu.APIKey())
	t.Setenv("RESCALE_API_URL", url)
	t.Setenv("HOME", root)
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"mount", "--foreground", "--cache-dir", filepath.Join(root, "cache"), mnt}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		if _, ok := mountedAt(mnt); ok {
			_ = exec.Command("fusermount3", "-u", "-z", mnt).Run()
		}
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("the mount did not end after its cleanup unmount")
		}
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	})
	addrRE := regexp.MustCompile(`msg="serving profiles" url=http://(127\.0\.0\.1:\d+)/debug/pprof/`)
	var addr string
	waitFor(t, func() bool {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		_, err := os.Stat(filepath.Join(mnt, "jobs", job.ID))
		return addr != "" && err == nil
	})
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("profiles while mounted: %s", resp.Status)
	}

	if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
		t.Fatalf("fusermount3 -u: %v: %s", err, out)
	}
	select {
	case code := <-done:
		done <- code // for the cleanup
		if code != exitOK {
			t.Fatalf("mount exit %d after unmount", code)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the mount did not end after fusermount3 -u")
	}
	// The owner has ended: nothing of the mount answers any more.
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("the profiles at %s still answer after unmount", addr)
	}
}
