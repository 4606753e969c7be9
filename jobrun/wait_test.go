package jobrun

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// syncBuffer is a bytes.Buffer for a writer and a reader on different goroutines.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRunJobsClient(t *testing.T) (*remote.Client, *emulator.Emulator) {
	t.Helper()
	emu, err := emulator.New(emulator.Options{RunJobs: true, WorkDir: t.TempDir(),
		Lifecycle: emulator.Lifecycle{Stopping: time.Nanosecond}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(func() { srv.Close(); emu.Close() })
	c, err := remote.New(remote.Options{BaseURL: srv.URL, APIKey: emu.APIKey()})
	if err != nil {
		t.Fatal(err)
	}
	return c, emu
}

func startJob(t *testing.T, c *remote.Client, command, post string) string {
	t.Helper()
	ctx := context.Background()
	j, err := c.CreateJob(ctx, remote.JobSpec{Name: "w", JobAnalyses: []remote.JobAnalysis{{
		Hardware: remote.Hardware{CoreType: "emerald", CoresPerSlot: 2}, Command: command, PostProcessScriptCommand: post}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SubmitJob(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	return j.ID
}

// TestWaitFollow: status lines, the live log while it runs, then what post-processing wrote, then the
// completion; a heartbeat while nothing happens; core hours from the run's duration and cores.
func TestWaitFollow(t *testing.T) {
	c, _ := newRunJobsClient(t)
	// The job prints "one" and then blocks on a FIFO until the test has seen the waiter print "one"
	// alone and a heartbeat after it: the order below is then certain, whatever the machine's load.
	gate := filepath.Join(t.TempDir(), "gate")
	if err := syscall.Mkfifo(gate, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // a test that failed before opening the gate must not leave the job blocked
		if f, err := os.OpenFile(gate, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
	id := startJob(t, c, "echo one; read -r _ < '"+gate+"'; echo two", "echo summary")
	var out syncBuffer
	var rows []string // Row is called from Wait's own goroutine
	done := make(chan Result, 1)
	go func() {
		done <- Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 20 * time.Millisecond,
			Heartbeat: 300 * time.Millisecond, Follow: true, Out: NewPrinter(&out, nil),
			Row: func(s string) { rows = append(rows, s) }}, nil)
	}()
	waitOut(t, &out, regexp.MustCompile(`(?s)\]: one\n.*still Executing after`))
	if err := os.WriteFile(gate, []byte("go\n"), 0); err != nil {
		t.Fatal(err)
	}
	res := <-done
	got := out.String()
	if len(rows) < 2 || !strings.Contains(rows[0], "job "+id+" (w)") || !strings.Contains(rows[len(rows)-1], "exit 0: completed successfully") {
		t.Errorf("rows: %q", rows)
	}
	if res.Outcome.Code != ExitOK || len(res.Runs) != 1 || res.CoreHours <= 0 {
		t.Fatalf("result %+v\n%s", res, got)
	}
	order := []string{": Executing", "]: one", "still Executing after", "]: two", "]: Launching echo summary",
		"]: summary", "Completed (Completed successfully)", "completed successfully (exit 0)"}
	at := 0
	for _, s := range order {
		i := strings.Index(got[at:], s)
		if i < 0 {
			t.Fatalf("%q missing or out of order in:\n%s", s, got)
		}
		at += i + len(s)
	}
	if strings.Count(got, "]: one") != 1 || strings.Count(got, "]: summary") != 1 {
		t.Fatalf("log lines printed twice:\n%s", got)
	}
}

// TestWaitTimeoutAndInterrupt: --timeout and an interrupt each stop the job once and end with exit 4;
// with Detach an interrupt stops nothing.
func TestWaitTimeoutAndInterrupt(t *testing.T) {
	for _, tc := range []struct {
		name      string
		o         WaitOptions
		interrupt bool
		stops     int64
	}{
		{"timeout", WaitOptions{Timeout: 200 * time.Millisecond}, false, 1},
		{"interrupt", WaitOptions{}, true, 1},
		{"detach", WaitOptions{Detach: true}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, emu := newRunJobsClient(t)
			id := startJob(t, c, "sleep 60", "")
			var out syncBuffer
			o := tc.o
			o.Poll, o.Out = 20*time.Millisecond, NewPrinter(&out, nil)
			intr := make(chan struct{})
			if tc.interrupt {
				close(intr)
			}
			res := Wait(context.Background(), c, NewTracker(id, "w"), o, intr)
			if res.Outcome.Code != ExitStopped {
				t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
			}
			if n := emu.Counters().Requests[emulator.EndpointJobStop]; n != tc.stops {
				t.Fatalf("%d stops, want %d", n, tc.stops)
			}
			if tc.stops > 0 && res.Outcome.Reason != emulator.ReasonUserStopped {
				t.Fatalf("reason %q", res.Outcome.Reason)
			}
			if tc.stops == 0 {
				_ = c.StopJob(context.Background(), id) // let the emulator's Close end it quickly
			}
		})
	}
}

// TestWaitHeartbeatBetweenPolls: the heartbeat does not wait for the next poll: with polls an hour apart
// a CI log still gets a line every Heartbeat.
func TestWaitHeartbeatBetweenPolls(t *testing.T) {
	c, _ := newRunJobsClient(t)
	id := startJob(t, c, "sleep 60", "")
	var out syncBuffer
	intr := make(chan struct{})
	done := make(chan Result, 1)
	go func() {
		done <- Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: time.Hour,
			Heartbeat: 50 * time.Millisecond, StopWait: 50 * time.Millisecond, Out: NewPrinter(&out, nil)}, intr)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), "still ") < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling the output for a condition, not timing anything
	}
	close(intr)
	<-done
	if n := strings.Count(out.String(), "still "); n < 2 {
		t.Fatalf("%d heartbeat lines while the next poll was an hour away:\n%s", n, out.String())
	}
}

// TestWaitStopDuringRetriedPoll: a SIGINT/SIGTERM, or --timeout, while a status poll is being retried
// (statuses answering 504, the client backing off for minutes) still sends the stop at once (a CI
// runner kills the process seconds after its SIGTERM), and the polls after the stop end with StopWait.
func TestWaitStopDuringRetriedPoll(t *testing.T) {
	for _, tc := range []struct {
		name      string
		interrupt bool
		timeout   time.Duration
	}{
		{"interrupt", true, 0},
		{"timeout", false, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, emu := newRunJobsClient(t)
			id := startJob(t, c, "sleep 60", "")
			emu.SetFaults(emulator.Faults{ErrorRate: 1, Seed: 1, Endpoints: []string{emulator.EndpointStatuses}})
			var out syncBuffer
			intr := make(chan struct{})
			done := make(chan Result, 1)
			go func() {
				done <- Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 20 * time.Millisecond,
					Timeout: tc.timeout, StopWait: 300 * time.Millisecond, Out: NewPrinter(&out, nil)}, intr)
			}()
			deadline := time.Now().Add(20 * time.Second)
			for emu.Counters().Requests[emulator.EndpointStatuses] == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond) // waiting for the first (failing) poll, not timing it
			}
			if tc.interrupt {
				close(intr)
			}
			var res Result
			select {
			case res = <-done:
			case <-time.After(30 * time.Second): // below the 75 s at least that the client's 10 attempts take
				t.Fatalf("no result after 30s: the poll was not cut\n%s", out.String())
			}
			if res.Outcome.Code != ExitStopped {
				t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
			}
			if n := emu.Counters().Requests[emulator.EndpointJobStop]; n != 1 {
				t.Fatalf("%d stops, want 1\n%s", n, out.String())
			}
			emu.SetFaults(emulator.Faults{})
		})
	}
}

// TestWaitLogOverLimit: a log longer than what the waiter reads still yields its end, where the
// post-processing step's FAILURE lines and the exit lines are; only its middle is left out.
func TestWaitLogOverLimit(t *testing.T) {
	defer func(n int64) { maxLogBytes = n }(maxLogBytes)
	maxLogBytes = 64 << 10
	c, _ := newRunJobsClient(t)
	// ~200 KB of test output, then a compare step that prints FAILURE and exits 0.
	id := startJob(t, c, `for i in $(seq 4000); do echo "test output line $i ......................"; done`,
		"echo 'FAILURE case 7: differs'")
	var out syncBuffer
	res := Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 20 * time.Millisecond,
		Follow: true, FailOn: regexp.MustCompile(`^FAILURE`), Out: NewPrinter(&out, nil)}, nil)
	if res.Outcome.Code != ExitJobFailed || len(res.Outcome.ExitCodes) != 2 {
		t.Fatalf("code %d (%s), exit codes %v\n%s", res.Outcome.Code, res.Outcome.Why, res.Outcome.ExitCodes, out.String())
	}
	if !strings.Contains(out.String(), "FAILURE case 7: differs") {
		t.Fatalf("the FAILURE line is not shown:\n%s", out.String())
	}
}

// TestRunLogAfter: what --follow prints at the end of a log that was read with a gap in its middle.
func TestRunLogAfter(t *testing.T) {
	whole := runLog{text: []byte("a\nb\nc\n"), size: 6}
	// The log "0123\n5678\nABCD\n" (15 bytes) read as its first line, a gap line, and its last line.
	gapped := runLog{text: []byte("0123\n(5 bytes not read)\nABCD\n"), size: 15, tailOff: 10}
	for _, tc := range []struct {
		name string
		l    runLog
		off  int64
		want string
	}{
		{"whole, from the start", whole, 0, "a\nb\nc\n"},
		{"whole, the rest", whole, 2, "b\nc\n"},
		{"whole, all printed", whole, 6, ""},
		{"gapped, inside the tail", gapped, 12, "CD\n"},
		{"gapped, at the tail", gapped, 10, "ABCD\n"},
		{"gapped, before the gap", gapped, 5, "(5 bytes of process_output.log not shown)\nABCD\n"},
		{"gapped, all printed", gapped, 15, ""},
	} {
		if got := string(tc.l.after(tc.off)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestWaitFollowFetchesOnlyNewBytes: --follow of a growing live log asks each poll only for the bytes
// after those it has (a ranged tail), so following a log fetches about its size, not its size once per
// poll. The emulator's counters say what went over the wire.
func TestWaitFollowFetchesOnlyNewBytes(t *testing.T) {
	c, emu := newRunJobsClient(t)
	// About 21 KB in 40 lines, a line every 50 ms: the 10 ms polls see it grow many times.
	id := startJob(t, c, `for i in $(seq 40); do printf 'line %d %0500d\n' $i 0; sleep 0.05; done`, "")
	var out syncBuffer
	res := Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 10 * time.Millisecond,
		Follow: true, Out: NewPrinter(&out, nil)}, nil)
	if res.Outcome.Code != ExitOK {
		t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
	}
	for i := 1; i <= 40; i++ {
		if n := strings.Count(out.String(), fmt.Sprintf("]: line %d 0", i)); n != 1 {
			t.Fatalf("line %d printed %d times:\n%s", i, n, out.String())
		}
	}
	files, err := c.RunFiles(context.Background(), id, res.Runs[0].ID, logName)
	if err != nil || len(files) != 1 {
		t.Fatalf("log: %v %v", files, err)
	}
	size := files[0].DecryptedSize
	cn := emu.Counters()
	tails, served := cn.Requests[emulator.EndpointTail], cn.BytesOut[emulator.EndpointTail]
	// A tail that finds nothing new is a 416 with a one-line body.
	bound := size + 64*cn.Statuses[emulator.EndpointTail][http.StatusRequestedRangeNotSatisfiable]
	t.Logf("log %d bytes; %d tails served %d bytes (bound %d)", size, tails, served, bound)
	if tails < 5 {
		t.Fatalf("only %d tails: the log was not followed while it grew\n%s", tails, out.String())
	}
	if served > bound {
		t.Fatalf("following a %d-byte log fetched %d bytes in %d tails (bound %d): the whole log again on every poll",
			size, served, tails, bound)
	}
}

// newQuickClient is a client of emu that does not retry: each status poll is one request, so a test
// decides how many polls fail.
func newQuickClient(t *testing.T, emu *emulator.Emulator) *remote.Client {
	t.Helper()
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	c, err := remote.New(remote.Options{BaseURL: srv.URL, APIKey: emu.APIKey(), MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWaitRidesOutFailedPolls: status polls failing for a while (statuses answering 504, as they
// sometimes do) do not end the wait while the platform has answered within Unanswered; the job is
// followed to its end. (The waiter gave up after five failed polls, however short the outage.)
func TestWaitRidesOutFailedPolls(t *testing.T) {
	_, emu := newRunJobsClient(t)
	c := newQuickClient(t, emu)
	id := startJob(t, c, "echo done", "")
	emu.FailNext(emulator.EndpointStatuses, 12, emulator.Fault504)
	var out syncBuffer
	res := Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 10 * time.Millisecond,
		Unanswered: time.Minute, Out: NewPrinter(&out, nil)}, nil)
	if res.Outcome.Code != ExitOK {
		t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
	}
	if n := emu.Counters().Statuses[emulator.EndpointStatuses][504]; n != 12 {
		t.Fatalf("%d polls answered 504, want 12", n)
	}
	if !strings.Contains(out.String(), "retrying") || !strings.Contains(out.String(), "answers again") {
		t.Fatalf("the outage is not told:\n%s", out.String())
	}
}

// TestWaitGivesUpLeavingJobRunning: when the platform has not answered a status poll for Unanswered,
// the waiter ends with exit 1 and says the job was left running, with its id and the commands that
// follow it again or stop it. (It ended with the poll's error alone.)
func TestWaitGivesUpLeavingJobRunning(t *testing.T) {
	_, emu := newRunJobsClient(t)
	c := newQuickClient(t, emu)
	id := startJob(t, c, "sleep 60", "")
	var out syncBuffer
	done := make(chan Result, 1)
	go func() {
		done <- Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 10 * time.Millisecond,
			Unanswered: 300 * time.Millisecond, Out: NewPrinter(&out, nil)}, nil)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), ": Executing") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // waiting for the job to execute, not timing it
	}
	emu.SetFaults(emulator.Faults{ErrorRate: 1, Seed: 1, Endpoints: []string{emulator.EndpointStatuses}})
	var res Result
	select {
	case res = <-done:
	case <-time.After(time.Minute):
		t.Fatalf("the waiter never gave up\n%s", out.String())
	}
	emu.SetFaults(emulator.Faults{})
	t.Logf("output:\n%s", out.String())
	if res.Outcome.Code != ExitFailure {
		t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
	}
	for _, want := range []string{"left running", "last seen Executing", "rescalefs wait " + id, "rescalefs stop " + id} {
		if !strings.Contains(res.Outcome.Why, want) || !strings.Contains(out.String(), want) {
			t.Errorf("%q missing from the outcome %q or the output:\n%s", want, res.Outcome.Why, out.String())
		}
	}
	// It was indeed left running: nothing stopped it.
	if n := emu.Counters().Requests[emulator.EndpointJobStop]; n != 0 {
		t.Errorf("%d stops sent", n)
	}
	st, err := c.JobStatuses(context.Background(), id)
	if err != nil || len(st) == 0 || st[0].Status != remote.StatusExecuting {
		t.Errorf("statuses after the give-up: %v %v", st, err)
	}
	_ = c.StopJob(context.Background(), id)
}

// TestWaitStopFailsLeavesJobRunning: a --timeout whose stop the platform refuses ends with exit 1 and
// says the job was left running and how to stop it.
func TestWaitStopFailsLeavesJobRunning(t *testing.T) {
	_, emu := newRunJobsClient(t)
	c := newQuickClient(t, emu)
	id := startJob(t, c, "sleep 60", "")
	emu.SetFaults(emulator.Faults{ErrorRate: 1, Seed: 1, Endpoints: []string{emulator.EndpointJobStop}})
	var out syncBuffer
	res := Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 10 * time.Millisecond,
		Timeout: 100 * time.Millisecond, Out: NewPrinter(&out, nil)}, nil)
	emu.SetFaults(emulator.Faults{})
	if res.Outcome.Code != ExitFailure || !strings.Contains(res.Outcome.Why, "left running") ||
		!strings.Contains(res.Outcome.Why, "rescalefs stop "+id) {
		t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
	}
	_ = c.StopJob(context.Background(), id)
}

// TestFollowEvery: without Range, whole-log tails are paced by the log's size.
func TestFollowEvery(t *testing.T) {
	for _, tc := range []struct {
		size int64
		want time.Duration
	}{
		{0, 10 * time.Second},
		{followChunk - 1, 10 * time.Second},
		{followChunk, 20 * time.Second},
		{200 << 20, 130 * time.Second},
	} {
		if got := followEvery(10*time.Second, tc.size); got != tc.want {
			t.Errorf("followEvery(10s, %d) = %v, want %v", tc.size, got, tc.want)
		}
	}
}

// TestWaitFollowRangeIgnored: a platform that ignores Range on the tail endpoint (a 200 with the whole
// log) still has every line printed once, in order.
func TestWaitFollowRangeIgnored(t *testing.T) {
	_, emu := newRunJobsClient(t)
	var ignored atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/tail/") && r.Header.Get("Range") != "" {
			r.Header.Del("Range")
			ignored.Add(1)
		}
		emu.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := remote.New(remote.Options{BaseURL: srv.URL, APIKey: emu.APIKey()})
	if err != nil {
		t.Fatal(err)
	}
	id := startJob(t, c, `for i in $(seq 20); do echo "line $i"; sleep 0.05; done`, "")
	var out syncBuffer
	res := Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 10 * time.Millisecond,
		Follow: true, Out: NewPrinter(&out, nil)}, nil)
	if res.Outcome.Code != ExitOK {
		t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
	}
	if ignored.Load() < 2 {
		t.Fatalf("only %d tails with Range: the follow did not run", ignored.Load())
	}
	at := 0
	for i := 1; i <= 20; i++ {
		s := fmt.Sprintf("]: line %d\n", i)
		if n := strings.Count(out.String(), s); n != 1 {
			t.Fatalf("%q printed %d times:\n%s", s, n, out.String())
		}
		j := strings.Index(out.String()[at:], s)
		if j < 0 {
			t.Fatalf("%q out of order:\n%s", s, out.String())
		}
		at += j
	}
}

// TestWaitKeyRevokedLeavesJobRunning: a key revoked mid-wait (401) ends the wait at once, exit 1, with
// the job named as left running.
func TestWaitKeyRevokedLeavesJobRunning(t *testing.T) {
	c, emu := newRunJobsClient(t)
	id := startJob(t, c, "sleep 60", "")
	emu.SetKeyRevoked(true)
	var out syncBuffer
	res := Wait(context.Background(), c, NewTracker(id, "w"), WaitOptions{Poll: 10 * time.Millisecond,
		Out: NewPrinter(&out, nil)}, nil)
	emu.SetKeyRevoked(false)
	if res.Outcome.Code != ExitFailure || !strings.Contains(res.Outcome.Why, "left running") ||
		!strings.Contains(res.Outcome.Why, "rescalefs wait "+id) {
		t.Fatalf("code %d (%s)\n%s", res.Outcome.Code, res.Outcome.Why, out.String())
	}
	if n := emu.Counters().Requests[emulator.EndpointStatuses]; n != 1 {
		t.Errorf("%d status polls after a 401, want 1", n)
	}
	_ = c.StopJob(context.Background(), id)
}

// waitOut waits until what Wait printed matches re; the deadline only stops a hung test.
func waitOut(t *testing.T, out *syncBuffer, re *regexp.Regexp) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !re.MatchString(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("never printed %v:\n%s", re, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
