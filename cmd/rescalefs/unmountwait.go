package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// unmountWait bounds how long `rescalefs unmount` waits for the mount process to finish once the
// kernel has let the mount go: its shutdown cancels every platform call first, so it takes a moment,
// not a retry budget.
const unmountWait = 30 * time.Second

// statusReadTimeout bounds reading the status file before unmounting: a wedged mount must not hang
// the command that is meant to get rid of it.
const statusReadTimeout = 2 * time.Second

// mountPID is the pid of the process serving the mount at dir, from its status file; 0 when unknown.
func mountPID(dir string) int {
	ch := make(chan int, 1)
	go func() {
		st, err := readMountStatus(filepath.Join(dir, ".rescalefs", "status"))
		if err != nil {
			ch <- 0
			return
		}
		ch <- st.PID
	}()
	select {
	case pid := <-ch:
		return pid
	case <-time.After(statusReadTimeout):
		return 0
	}
}

// waitMountProcess waits for the mount process to exit, so that `unmount X && mount X` finds the cache
// directory free; if it does not within unmountWait it says so (it goes on finishing by itself).
func waitMountProcess(dir string, pid int, stderr io.Writer) {
	if pid <= 0 || pid == os.Getpid() {
		return // unknown, or served by this very process (tests)
	}
	if processGone(pid, unmountWait) {
		return
	}
	fmt.Fprintf(stderr, "rescalefs unmount: %s is unmounted; its process (pid %d) is still finishing and exits by itself\n", dir, pid)
}

// processGone waits up to within for pid to exit (a zombie counts as exited: it holds no files).
func processGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err != nil || strings.Contains(string(b), ") Z ") {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
