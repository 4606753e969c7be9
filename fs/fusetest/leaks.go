package fusetest

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/splice"
)

// Leak slack: what may legitimately outlive a mount in the test process. The platform client's HTTP
// transport is never closed by the mount (its idle connections end when the server closes them, which
// takes a moment), so a couple of goroutines are allowed while they wind down; nothing else is.
const (
	goroutineSlack = 2
	fdSlack        = 0
	leakSettle     = 10 * time.Second
)

// CheckLeaks counts goroutines and open file descriptors now and, in t.Cleanup, checks that they are back
// to that once everything the test set up afterwards has been torn down (it must be called before
// Mount or MountOn, so its cleanup runs after theirs). It waits with a deadline for them to settle and
// reports what is left: the goroutine stacks, the descriptors' targets. Tests using it must not run in
// parallel with others.
func CheckLeaks(t testing.TB) {
	t.Helper()
	g0, fds0 := runtime.NumGoroutine(), openFDs()
	t.Cleanup(func() {
		var g int
		var fds map[string]string
		deadline := time.Now().Add(leakSettle)
		for {
			// go-fuse keeps a process-wide pool of splice pipes for reads; idle ones are not ours.
			splice.ClearSplicePool()
			g, fds = runtime.NumGoroutine(), openFDs()
			if g <= g0+goroutineSlack && len(fds) <= len(fds0)+fdSlack {
				t.Logf("no leak: goroutines %d (before %d), fds %d (before %d)", g, g0, len(fds), len(fds0))
				return
			}
			if time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if g > g0+goroutineSlack {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutine leak: %d before the mount, %d after teardown:\n%s", g0, g, buf)
		}
		if len(fds) > len(fds0)+fdSlack {
			var extra []string
			for fd, target := range fds {
				if _, ok := fds0[fd]; !ok || fds0[fd] != target {
					extra = append(extra, fd+" -> "+target)
				}
			}
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("file descriptor leak: %d before the mount, %d after teardown; new: %s\n%s", len(fds0), len(fds), strings.Join(extra, ", "), buf)
		}
	})
}

// openFDs maps the process's open descriptors to what they point at, leaving out go-fuse's splice
// /dev/null: opened once per process (write-only, without close-on-exec) and never closed.
func openFDs() map[string]string {
	out := map[string]string{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return out
	}
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the descriptor ReadDir itself used, closed by now
		}
		if target == os.DevNull && fdFlags(e.Name())&(os.O_WRONLY|0o2000000) == os.O_WRONLY {
			continue
		}
		out[e.Name()] = target
	}
	return out
}

// fdFlags reads a descriptor's open flags from /proc/self/fdinfo; -1 when unknown.
func fdFlags(fd string) int {
	b, err := os.ReadFile("/proc/self/fdinfo/" + fd)
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err == nil {
				return int(n)
			}
		}
	}
	return -1
}
