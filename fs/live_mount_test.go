package fs_test

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// liveLifecycle starts runs at once: a job with RunFor executes (and its log grows) almost all of it.
var liveLifecycle = emulator.Lifecycle{Pending: 50 * time.Millisecond, Queued: 50 * time.Millisecond,
	Started: 50 * time.Millisecond, Validated: 50 * time.Millisecond, Stopping: 50 * time.Millisecond}

func liveJobs() []emulator.JobSpec {
	return []emulator.JobSpec{
		{ID: "Done1", Name: "finished long ago", Created: time.Now().Add(-24 * time.Hour), Files: []emulator.FileSpec{
			{RelativePath: "out/x.dat", Size: 100},
		}},
		{ID: "Live1", Name: "running", RunFor: time.Minute, Files: []emulator.FileSpec{
			{RelativePath: "out/a.dat", Size: 1000},
			{RelativePath: "out/b.dat", Size: 2000},
		}},
		{ID: "Fail1", Name: "diverging", RunFor: time.Hour, Fail: true},
	}
}

// liveBuffer collects a program's output while it runs.
type liveBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *liveBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *liveBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLiveTail runs `tail -f` on path, polling every 0.1 s, and stops it (by its pid) at cleanup.
func startLiveTail(t *testing.T, path string) (stdout, stderr *liveBuffer) {
	t.Helper()
	stdout, stderr = &liveBuffer{}, &liveBuffer{}
	cmd := exec.Command("tail", "-s", "0.1", "-f", path)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("tail -f: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
	}
	t.Cleanup(stop) // before the unmount (cleanups run last first): an open file would keep it busy
	return stdout, stderr
}

func TestLiveJobFollowedToCompletion(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: liveJobs(), Lifecycle: liveLifecycle})
	dir := filepath.Join(env.Dir, "jobs/Live1")
	logPath := filepath.Join(dir, "process_output.log")
	ctx := fusetest.Context(t)

	// The running job's folder is its live working directory.
	fusetest.Eventually(t, 10*time.Second, "process_output.log live in jobs/Live1", func() bool {
		es, err := os.ReadDir(dir)
		return err == nil && len(es) > 0 && slices.ContainsFunc(es, func(e os.DirEntry) bool {
			return e.Name() == "process_output.log"
		})
	})
	if got := liveXattr(t, logPath, "user.rescale.live"); got != "true" {
		t.Errorf("live xattr %q", got)
	}
	if slices.Contains(readNames(t, filepath.Join(env.Dir, "completed")), "Live1") {
		t.Error("running job in completed/")
	}

	// Reading a live file returns what the tail endpoint returns (it grows meanwhile: what we read
	// lies between what tail gave before and after).
	final := env.Plaintext(t, fileOf(t, env, "Live1", "process_output.log").ID)
	var got []byte
	fusetest.Eventually(t, 10*time.Second, "a non-empty live log", func() bool {
		var err error
		got, err = os.ReadFile(logPath)
		return err == nil && len(got) > 0
	})
	after, err := env.Client.Tail(ctx, "Live1", "1", "process_output.log")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(after, got) || !bytes.HasPrefix(final, got) {
		t.Fatalf("live read (%d bytes) is not a prefix of the tail endpoint's (%d bytes)", len(got), len(after))
	}

	// tail -f follows it: new lines appear, contiguous (no "file truncated", nothing twice).
	out, errOut := startLiveTail(t, logPath)
	fusetest.Eventually(t, 10*time.Second, "tail -f prints its first lines", func() bool {
		return strings.Count(out.String(), "\n") >= 10
	})
	first := out.String()
	fusetest.Eventually(t, 20*time.Second, "tail -f prints new lines", func() bool {
		return len(out.String()) > len(first)+200
	})
	if s := out.String(); !bytes.Contains(final, []byte(s)) {
		t.Errorf("tail -f output is not a contiguous part of the log:\n%s", s)
	}

	// Completion: the folder switches to the uploaded outputs, the job appears in completed/, and
	// the tail -f still running reads on to the end of the log.
	if err := env.Emulator.CompleteJob("Live1"); err != nil {
		t.Fatal(err)
	}
	fusetest.Eventually(t, 10*time.Second, "Live1 in completed/", func() bool {
		return slices.Contains(readNames(t, filepath.Join(env.Dir, "completed")), "Live1")
	})
	fusetest.Eventually(t, 10*time.Second, "the outputs in jobs/Live1", func() bool {
		names, err := os.ReadDir(dir)
		return err == nil && len(names) == 2 && names[0].Name() == "out" && names[1].Name() == "process_output.log" &&
			liveXattr(t, logPath, "user.rescale.live") == ""
	})
	for _, f := range env.Jobs[1].Files {
		b, err := os.ReadFile(filepath.Join(dir, f.RelativePath))
		if err != nil || !bytes.Equal(b, env.Plaintext(t, f.ID)) {
			t.Errorf("%s after completion: %v", f.RelativePath, err)
		}
	}
	fusetest.Eventually(t, 20*time.Second, "tail -f reaching the end of the log", func() bool {
		return strings.HasSuffix(out.String(), "Run 1 exited with status 0\n")
	})
	if s := out.String(); !bytes.HasSuffix(final, []byte(s)) {
		t.Errorf("tail -f output is not the log's end:\n%s", s)
	}
	if e := errOut.String(); e != "" {
		t.Errorf("tail -f complained: %s", e)
	}
	if got := liveXattr(t, dir, "user.rescale.outcome"); got != "succeeded" {
		t.Errorf("outcome %q", got)
	}
	if slices.Contains(readNames(t, filepath.Join(env.Dir, "failed")), "Live1") {
		t.Error("a successful job in failed/")
	}
	// ls -lt completed/: the job that just completed comes first, its mtime the completion date.
	if order := readDirOrder(t, filepath.Join(env.Dir, "completed")); len(order) == 0 || order[0] != "Live1" {
		t.Errorf("completed/ order %v", order)
	}
	l1, err1 := os.Lstat(filepath.Join(env.Dir, "completed/Live1"))
	l2, err2 := os.Lstat(filepath.Join(env.Dir, "completed/Done1"))
	if err1 != nil || err2 != nil || !l2.ModTime().Before(l1.ModTime()) {
		t.Errorf("completed link mtimes: Live1 %v, Done1 %v (%v %v)", l1.ModTime(), l2.ModTime(), err1, err2)
	}
	date := liveXattr(t, dir, "user.rescale.date_completed")
	if date == "" || !l1.ModTime().Equal(liveParseTime(t, date)) {
		t.Errorf("completed/Live1 mtime %v, date_completed %q", l1.ModTime(), date)
	}
}

func TestFailedJobs(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: liveJobs(), Lifecycle: liveLifecycle})
	job := filepath.Join(env.Dir, "jobs/Fail1")
	fusetest.Eventually(t, 10*time.Second, "Fail1 running", func() bool {
		return liveXattr(t, job, "user.rescale.status") == "Executing"
	})
	if names := readNames(t, filepath.Join(env.Dir, "failed")); len(names) != 0 {
		t.Errorf("failed/ before any failure: %v", names)
	}
	if err := env.Emulator.CompleteJob("Fail1"); err != nil {
		t.Fatal(err)
	}
	fusetest.Eventually(t, 10*time.Second, "Fail1 in failed/ and completed/", func() bool {
		return slices.Equal(readNames(t, filepath.Join(env.Dir, "failed")), []string{"Fail1"}) &&
			slices.Contains(readNames(t, filepath.Join(env.Dir, "completed")), "Fail1")
	})
	if l, err := os.Readlink(filepath.Join(env.Dir, "failed/Fail1")); err != nil || l != "../jobs/Fail1" {
		t.Errorf("failed link %q %v", l, err)
	}
	if got := liveXattr(t, job, "user.rescale.outcome"); got != "failed" {
		t.Errorf("outcome %q", got)
	}
	if got := liveXattr(t, job, "user.rescale.status_reason"); got != emulator.ReasonRunFailed {
		t.Errorf("status_reason %q", got)
	}
	b, err := os.ReadFile(filepath.Join(env.Dir, "failed/Fail1/process_output.log"))
	if err != nil || !bytes.Contains(b, []byte("FATAL ERROR")) {
		t.Errorf("the failed job's log through failed/: %v", err)
	}
}

// TestLiveRequestsShared: many programs listing, stat'ing and reading a running job's files cost at
// most one directory-contents request, and one tail request per open file, per interval.
func TestLiveRequestsShared(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: liveJobs(), Lifecycle: liveLifecycle})
	dir := filepath.Join(env.Dir, "jobs/Live1")
	logPath := filepath.Join(dir, "process_output.log")
	fusetest.Eventually(t, 10*time.Second, "Live1 live", func() bool {
		_, err := os.Stat(logPath)
		return err == nil
	})
	held, err := os.Open(logPath) // as tail -f holds it
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	const callers = 16
	dc0 := env.Requests(emulator.EndpointDirectoryContents)
	tail0 := env.Requests(emulator.EndpointTail)
	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	// Stop the callers on every path out, a failed Eventually included: left running, they would keep
	// the mount busy at the unmount.
	stopCallers := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopCallers()
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch i % 4 {
				case 0:
					_, err = os.ReadDir(dir)
				case 1:
					_, err = os.Stat(filepath.Join(dir, "process_output.log"))
				case 2:
					var st unix.Stat_t
					err = unix.Fstat(int(held.Fd()), &st)
				case 3:
					_, err = held.ReadAt(buf, 0)
					if err == io.EOF {
						err = nil
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// Run for three intervals of request counting, then stop the callers.
	fusetest.Eventually(t, 30*time.Second, "three live intervals", func() bool {
		return env.Requests(emulator.EndpointDirectoryContents)-dc0 >= 3 || time.Since(start) > 4*fs.LiveInterval
	})
	stopCallers()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Errorf("caller: %v", err)
	}
	// At most one request per interval started, plus the one in flight at the start.
	limit := int64(elapsed/fs.LiveInterval) + 2
	if n := env.Requests(emulator.EndpointDirectoryContents) - dc0; n > limit || n == 0 {
		t.Errorf("%d directory-contents requests in %v (limit %d) for %d callers", n, elapsed, limit, callers)
	}
	if n := env.Requests(emulator.EndpointTail) - tail0; n > limit || n == 0 {
		t.Errorf("%d tail requests in %v (limit %d) for %d callers", n, elapsed, limit, callers)
	}
}

func liveXattr(t *testing.T, path, name string) string {
	t.Helper()
	buf := make([]byte, 1024)
	n, err := unix.Getxattr(path, name, buf)
	if err != nil {
		if err == syscall.ENODATA {
			return ""
		}
		t.Fatalf("getxattr %s %s: %v", path, name, err)
	}
	return string(buf[:n])
}

func liveParseTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
