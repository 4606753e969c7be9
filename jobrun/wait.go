package jobrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// Defaults of the waiter.
const (
	DefaultPoll      = 10 * time.Second
	DefaultHeartbeat = time.Minute // a CI log that stays silent longer looks stalled
	// DefaultStopWait bounds how long a waiter that stopped a job waits for it to reach Completed.
	DefaultStopWait = 2 * time.Minute
	// DefaultUnanswered is how long status polls may fail (each one already retried by the client
	// within the network policy's budget) before the waiter gives up with ExitFailure, leaving the job
	// running and saying how to follow it again. Ten policy budgets: statuses sometimes answer 504 [C]
	// and a platform blip or restart of a few minutes must not fail a CI step whose job runs on; a
	// platform gone for longer is better told than waited on forever (Rescale's SDK polls forever).
	// A count of failed polls would mean anything from seconds (fast errors) to many minutes.
	DefaultUnanswered = 10 * remote.DefaultBudget
	// logName is the log every run has [C].
	logName = "process_output.log"
	// followChunk bounds one --follow tail: a log that grew more between two polls is caught up over
	// the next polls, and what is left at the end comes from the uploaded log.
	followChunk = 16 << 20
)

// maxLogBytes bounds a log read for the outcome (a variable for tests).
var maxLogBytes int64 = 256 << 20

// Printer writes whole lines for several goroutines; each line is prefixed with the time.
type Printer struct {
	mu  sync.Mutex // serialises lines
	w   io.Writer
	now func() time.Time
}

func NewPrinter(w io.Writer, now func() time.Time) *Printer {
	if now == nil {
		now = time.Now
	}
	return &Printer{w: w, now: now}
}

// Linef prints one line stamped with the current time.
func (p *Printer) Linef(format string, args ...any) {
	p.At(p.now(), format, args...)
}

// timeFormat stamps the waiter's lines.
const timeFormat = "2006-01-02T15:04:05Z"

// At prints one line stamped with t.
func (p *Printer) At(t time.Time, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%s  %s\n", t.UTC().Format(timeFormat), fmt.Sprintf(format, args...))
}

// Lines prints lines already stamped, together.
func (p *Printer) Lines(lines []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range lines {
		fmt.Fprintln(p.w, l)
	}
}

// Raw writes text as is (followed log output), completing a missing final newline.
func (p *Printer) Raw(prefix string, b []byte) {
	if len(b) == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		io.WriteString(p.w, prefix+l)
	}
}

// WaitOptions configure Wait.
type WaitOptions struct {
	Poll      time.Duration // 0 = DefaultPoll
	Heartbeat time.Duration // 0 = DefaultHeartbeat
	Timeout   time.Duration // 0 = none; else the job is stopped when it runs longer (from the start of the wait)
	StopWait  time.Duration // 0 = DefaultStopWait
	// Unanswered is how long status polls may fail before the waiter gives up (exit 1), leaving the
	// job running; 0 = DefaultUnanswered.
	Unanswered time.Duration
	Follow     bool // stream process_output.log while the job runs, then what post-processing wrote
	FailOn     *regexp.Regexp
	Detach     bool   // an interrupt leaves the job running
	Prefix     string // before followed log lines (a matrix names each job)
	Out        *Printer
	// Row, when set, receives a one-line summary of the job after every poll (a Board's row).
	Row func(text string)
}

// RunResult is one run of a job.
type RunResult struct {
	ID        string
	Variables []remote.RunVariable
	Outcome   Outcome
	Duration  time.Duration
}

// Result is how a waited job ended.
type Result struct {
	JobID     string
	Name      string
	Outcome   Outcome
	Runs      []RunResult
	Duration  time.Duration // from Executing to Completed (0 when it never executed)
	CoreHours float64
}

// Wait follows one job to its end; interrupt closing means SIGINT/SIGTERM. It never returns an error:
// a failure of rescalefs or the platform is an Outcome with ExitFailure.
func Wait(ctx context.Context, c *remote.Client, t *Tracker, o WaitOptions, interrupt <-chan struct{}) Result {
	w := &waiter{c: c, t: t, o: o}
	if w.o.Poll <= 0 {
		w.o.Poll = DefaultPoll
	}
	if w.o.Heartbeat <= 0 {
		w.o.Heartbeat = DefaultHeartbeat
	}
	if w.o.StopWait <= 0 {
		w.o.StopWait = DefaultStopWait
	}
	if w.o.Unanswered <= 0 {
		w.o.Unanswered = DefaultUnanswered
	}
	return w.run(ctx, interrupt)
}

type waiter struct {
	c        *remote.Client
	t        *Tracker
	o        WaitOptions
	followed int64     // bytes of the followed run's log already printed
	partial  []byte    // bytes of the followed log after followed, fetched but not a whole line yet
	noRange  bool      // the platform ignored Range on the last tail: whole-log tails are paced
	nextTail time.Time // with noRange, no tail before this
	runID    string    // the followed run: the first one the platform lists
	seen     int       // statuses already observed
	statuses remote.Statuses
}

func (w *waiter) label() string {
	if w.t.Name == "" {
		return "job " + w.t.JobID
	}
	return fmt.Sprintf("job %s (%s)", w.t.JobID, w.t.Name)
}

func (w *waiter) fail(err error) Result {
	w.o.Out.Linef("%s: %v", w.label(), err)
	return Result{JobID: w.t.JobID, Name: w.t.Name, Outcome: Outcome{Code: ExitFailure, Why: err.Error(),
		Status: w.t.Status()}}
}

// leftRunning ends the wait with ExitFailure while the job goes on (the platform stopped answering, a
// stop could not be sent): the one thing a CI log must then say is that a job is still running, and
// how to find it again.
func (w *waiter) leftRunning(why string) Result {
	seen := "no status seen yet"
	if s := w.t.Status(); s != "" {
		seen = "last seen " + s
	}
	id := w.t.JobID
	return w.fail(fmt.Errorf("%s; the job was left running (%s): rescalefs wait %s follows it, rescalefs stop %s stops it",
		why, seen, id, id))
}

func (w *waiter) run(ctx context.Context, interrupt <-chan struct{}) Result {
	out := w.o.Out
	start := out.now()
	lastLine := start
	var timeout <-chan struct{}
	if w.o.Timeout > 0 {
		tctx, cancel := context.WithTimeout(context.Background(), w.o.Timeout)
		defer cancel()
		timeout = tctx.Done()
	}
	// pollCtx bounds the wait's platform calls: an interrupt or --timeout cancels it, so the stop goes
	// out at once even while a poll is being retried for minutes (a CI runner kills us seconds after its
	// SIGTERM); once a stop is sent it ends with StopWait, and so does the wait.
	pollCtx, cancelPoll := context.WithCancel(ctx)
	defer func() { cancelPoll() }()
	if interrupt != nil || timeout != nil {
		go func(intr, tout <-chan struct{}, pc context.Context, cancel context.CancelFunc) {
			select {
			case <-intr:
				cancel()
			case <-tout:
				cancel()
			case <-pc.Done():
			}
		}(interrupt, timeout, pollCtx, cancelPoll)
	}
	var stopDeadline <-chan struct{}
	stopSent := func() {
		cancelPoll()
		pollCtx, cancelPoll = context.WithTimeout(ctx, w.o.StopWait)
		stopDeadline = pollCtx.Done()
	}
	tick := time.NewTicker(w.o.Poll)
	defer tick.Stop()
	// The polls fail since lastAnswer when outage is set: the waiter keeps polling for Unanswered.
	lastAnswer := start
	var outage error
	for {
		st, err := w.c.JobStatuses(pollCtx, w.t.JobID)
		switch {
		case err != nil && ctx.Err() != nil:
			return w.fail(ctx.Err())
		case err != nil && pollCtx.Err() != nil:
			// Cut by an interrupt, --timeout or the stop's deadline: the select below acts on it.
		case errors.Is(err, remote.ErrNotFound):
			return w.fail(fmt.Errorf("statuses: %w", err))
		case errors.Is(err, remote.ErrUnauthorized):
			return w.leftRunning(fmt.Sprintf("statuses: %v", err))
		case err != nil:
			if outage == nil {
				out.Linef("%s: statuses: %v; retrying (giving up after %s without an answer)", w.label(), err, w.o.Unanswered)
				lastLine = out.now()
			}
			outage = err
			if since := out.now().Sub(lastAnswer); since >= w.o.Unanswered {
				return w.leftRunning(fmt.Sprintf("no status from the platform for %s (statuses: %v)", roundDuration(since), err))
			}
		default:
			if outage != nil {
				out.Linef("%s: the platform answers again", w.label())
				lastLine, outage = out.now(), nil
			}
			lastAnswer = out.now()
			w.statuses = st
			// Every status reached since the last look, oldest first: several can pass between polls.
			var lines, ending []string
			var act Action
			for i := len(st) - 1 - w.seen; i >= 0; i-- {
				s := st[i]
				var changed bool
				var a Action
				changed, a = w.t.Observe(s.Status)
				if a != ActNone {
					act = a
				}
				if !changed {
					continue
				}
				at := s.StatusDate.Time
				if at.IsZero() {
					at = out.now()
				}
				line := w.label() + ": " + s.Status
				if s.StatusReason != "" {
					line += " (" + s.StatusReason + ")"
				}
				line = at.UTC().Format(timeFormat) + "  " + line
				if s.Status == remote.StatusStopping || s.Status == remote.StatusCompleted {
					ending = append(ending, line) // after the end of the log
				} else {
					lines = append(lines, line)
				}
			}
			w.seen = max(w.seen, len(st))
			if act == ActFinish {
				out.Lines(lines)
				return w.finish(ctx, ending)
			}
			if lines = append(lines, ending...); len(lines) > 0 {
				out.Lines(lines)
				lastLine = out.now()
			}
		}
		if w.o.Row != nil {
			w.o.Row(fmt.Sprintf("%-40s %-12s %s", w.label(), orUnknown(w.t.Status()), out.now().Sub(start).Round(time.Second)))
		}
		if w.o.Follow && w.t.Phase() == PhaseRunning {
			if w.follow(pollCtx) {
				lastLine = out.now()
			}
		}
		// Wait for the next poll; the heartbeat has its own timer, so a --poll longer than --heartbeat
		// still leaves no silence longer than the heartbeat.
		for waiting := true; waiting; {
			waiting = false
			beat := time.NewTimer(max(0, lastLine.Add(w.o.Heartbeat).Sub(out.now())))
			select {
			case <-beat.C:
				now := out.now()
				quiet := ""
				if outage != nil {
					quiet = fmt.Sprintf(" (no status from the platform for %s)", roundDuration(now.Sub(lastAnswer)))
				}
				out.Linef("%s: still %s after %s%s", w.label(), orUnknown(w.t.Status()), now.Sub(start).Round(time.Second), quiet)
				lastLine, waiting = now, true
			case <-tick.C:
			case <-timeout:
				timeout = nil
				if w.t.Cancel(CauseTimeout) == ActStop {
					out.Linef("%s: --timeout %s reached: stopping it", w.label(), w.o.Timeout)
					if err := w.c.StopJob(ctx, w.t.JobID); err != nil {
						return w.leftRunning(fmt.Sprintf("stop: %v", err))
					}
					stopSent()
				}
			case <-interrupt:
				interrupt = nil
				if w.o.Detach {
					out.Linef("%s: interrupted; left running (--detach)", w.label())
					return Result{JobID: w.t.JobID, Name: w.t.Name, Outcome: Outcome{Code: ExitStopped,
						Why: "not waited for: interrupted (--detach: still running)", Status: w.t.Status()}}
				}
				if w.t.Cancel(CauseInterrupt) == ActStop {
					out.Linef("%s: interrupted: stopping it", w.label())
					// The caller's context may be the one being cancelled: the stop must still go out.
					sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
					err := w.c.StopJob(sctx, w.t.JobID)
					cancel()
					if err != nil {
						return w.leftRunning(fmt.Sprintf("stop: %v", err))
					}
					stopSent()
				}
			case <-stopDeadline:
				out.Linef("%s: stop sent, not completed after %s; giving up (rescalefs wait %s follows it to its end)",
					w.label(), w.o.StopWait, w.t.JobID)
				return Result{JobID: w.t.JobID, Name: w.t.Name, Outcome: Outcome{Code: ExitStopped,
					Why: "stopped; not completed within " + w.o.StopWait.String(), Status: w.t.Status()}}
			case <-ctx.Done():
				return w.fail(ctx.Err())
			}
			beat.Stop()
		}
	}
}

// followEvery is how often a platform that ignores Range on the tail endpoint (and so sends the whole
// log each time) is asked for a log of size bytes: every poll up to followChunk, then one poll more per
// followChunk, as the mount paces its live files. A 200 MB log is then fetched every 13 polls.
func followEvery(poll time.Duration, size int64) time.Duration {
	return poll * time.Duration(1+size/followChunk)
}

// roundDuration is d for a person: whole seconds, or milliseconds under a second.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// follow prints what the first run's live log gained since the last look; it reports whether it printed.
// Each look asks only for the bytes after those already fetched (a ranged tail): a log followed for
// hours is fetched once, not once per poll.
func (w *waiter) follow(ctx context.Context) bool {
	if w.runID == "" {
		// The first run that started: run ids are the platform's, not always "1".
		runs, err := w.c.JobRuns(ctx, w.t.JobID)
		if err != nil || len(runs) == 0 {
			return false
		}
		w.runID = runs[0].ID
	}
	now := w.o.Out.now()
	if w.noRange && now.Before(w.nextTail) {
		return false
	}
	from := w.followed + int64(len(w.partial))
	b, ranged, err := w.c.TailRange(ctx, w.t.JobID, w.runID, logName, from, followChunk)
	if err != nil {
		return false
	}
	if from > 0 {
		w.noRange = !ranged
		w.nextTail = now.Add(followEvery(w.o.Poll, from+int64(len(b))))
	}
	if len(b) == 0 {
		return false
	}
	// Only whole lines: the rest waits for its newline, unless it is already longer than a chunk.
	chunk := append(w.partial, b...)
	i := bytes.LastIndexByte(chunk, '\n')
	if i < 0 && len(chunk) < followChunk {
		w.partial = chunk
		return false
	}
	if i < 0 {
		i = len(chunk) - 1
	}
	w.o.Out.Raw(w.o.Prefix, chunk[:i+1])
	w.followed += int64(i + 1)
	w.partial = append([]byte(nil), chunk[i+1:]...)
	return true
}

// finish reads the runs and their logs and classifies the outcome.
func (w *waiter) finish(ctx context.Context, statusLines []string) Result {
	res := Result{JobID: w.t.JobID, Name: w.t.Name}
	runs, err := w.c.JobRuns(ctx, w.t.JobID)
	if err != nil {
		return w.fail(fmt.Errorf("runs: %w", err))
	}
	var all []byte
	logs := make([][]byte, len(runs))
	for i, r := range runs {
		var lg runLog
		files, err := w.c.RunFiles(ctx, w.t.JobID, r.ID, logName)
		if err != nil {
			return w.fail(fmt.Errorf("run %s files: %w", r.ID, err))
		}
		for _, f := range files {
			if f.RelativePath != logName {
				continue
			}
			if lg, err = readLog(ctx, w.c, f); err != nil {
				return w.fail(fmt.Errorf("run %s log: %w", r.ID, err))
			}
			logs[i] = lg.text
		}
		all = append(all, logs[i]...)
		if w.o.Follow && (r.ID == w.runID || w.runID == "" && i == 0) && lg.size > w.followed {
			// What came after the last look: the end of the command and the post-processing step.
			w.o.Out.Raw(w.o.Prefix, lg.after(w.followed))
			w.followed = lg.size
		}
	}
	w.o.Out.Lines(statusLines)
	res.Outcome = Classify(w.t.Cause(), w.statuses, all, w.o.FailOn)
	cores := w.cores(ctx)
	for i, r := range runs {
		d := time.Duration(0)
		if !r.DateStarted.IsZero() && !r.DateCompleted.IsZero() {
			d = r.DateCompleted.Sub(r.DateStarted.Time)
		}
		res.CoreHours += d.Hours() * float64(cores)
		rr := RunResult{ID: r.ID, Variables: r.Variables, Duration: d, Outcome: RunOutcome(res.Outcome, logs[i], w.o.FailOn)}
		res.Runs = append(res.Runs, rr)
	}
	res.Duration = executionTime(w.statuses)
	if len(res.Runs) > 1 {
		for _, r := range res.Runs {
			var vars []string
			for _, v := range r.Variables {
				vars = append(vars, v.Name+"="+v.DisplayValue)
			}
			w.o.Out.Linef("%s run %s (%s): %s (exit %d)", w.label(), r.ID, strings.Join(vars, ", "), r.Outcome.Why, r.Outcome.Code)
		}
	}
	line := fmt.Sprintf("%s: %s (exit %d)", w.label(), res.Outcome.Why, res.Outcome.Code)
	if w.o.Row != nil {
		w.o.Row(fmt.Sprintf("%-40s %-12s exit %d: %s", w.label(), res.Outcome.Status, res.Outcome.Code, res.Outcome.Why))
	}
	w.o.Out.Linef("%s", line)
	if res.Outcome.Code == ExitJobFailed {
		for _, f := range res.Outcome.Failures {
			w.o.Out.Raw(w.o.Prefix+"  ", []byte(f))
		}
	}
	return res
}

// cores is the job's cores per slot, for core hours; 1 when the detail does not say.
func (w *waiter) cores(ctx context.Context) int {
	d, err := w.c.GetJobDetail(ctx, w.t.JobID)
	if err != nil || len(d.JobAnalyses) == 0 || d.JobAnalyses[0].Hardware.CoresPerSlot <= 0 {
		return 1
	}
	return d.JobAnalyses[0].Hardware.CoresPerSlot
}

// executionTime is the time from the first Executing status to Completed.
func executionTime(s remote.Statuses) time.Duration {
	var exec, done time.Time
	for _, st := range s {
		switch st.Status {
		case remote.StatusExecuting:
			exec = st.StatusDate.Time
		case remote.StatusCompleted:
			done = st.StatusDate.Time
		}
	}
	if exec.IsZero() || done.IsZero() || done.Before(exec) {
		return 0
	}
	return done.Sub(exec)
}

// runLog is a run's log as read for the outcome: all of it, or (longer than maxLogBytes) its beginning,
// a line saying what was left out, and its end, where the exit lines and the post-processing step's
// FAILURE lines are.
type runLog struct {
	text    []byte
	size    int64 // of the whole log
	tailOff int64 // > 0: text ends with the log's bytes from tailOff on
}

// after is the log from offset off on, as far as it was read.
func (l runLog) after(off int64) []byte {
	switch {
	case off >= l.size:
		return nil
	case l.tailOff == 0:
		return l.text[off:]
	}
	tail := l.text[int64(len(l.text))-(l.size-l.tailOff):]
	if off >= l.tailOff {
		return tail[off-l.tailOff:]
	}
	return append([]byte(fmt.Sprintf("(%d bytes of process_output.log not shown)\n", l.tailOff-off)), tail...)
}

func readLog(ctx context.Context, c *remote.Client, f remote.File) (runLog, error) {
	l := runLog{size: f.DecryptedSize}
	if f.DecryptedSize <= 0 {
		return l, nil
	}
	if f.DecryptedSize <= maxLogBytes {
		b, err := readRange(ctx, c, f.ID, 0, -1)
		l.text, l.size = b, int64(len(b))
		return l, err
	}
	half := maxLogBytes / 2
	head, err := readRange(ctx, c, f.ID, 0, half)
	if err != nil {
		return l, err
	}
	l.tailOff = f.DecryptedSize - half
	tail, err := readRange(ctx, c, f.ID, l.tailOff, half)
	if err != nil {
		return l, err
	}
	// Whole lines on both sides of the gap.
	if i := bytes.LastIndexByte(head, '\n'); i >= 0 {
		head = head[:i+1]
	}
	if i := bytes.IndexByte(tail, '\n'); i >= 0 {
		tail, l.tailOff = tail[i+1:], l.tailOff+int64(i+1)
	}
	gap := fmt.Sprintf("(%d bytes of process_output.log not read)\n", l.tailOff-int64(len(head)))
	l.text = append(append(head, gap...), tail...)
	return l, nil
}

func readRange(ctx context.Context, c *remote.Client, id string, off, n int64) ([]byte, error) {
	rc, err := c.OpenRange(ctx, id, off, n)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if n < 0 {
		n = maxLogBytes
	}
	return io.ReadAll(io.LimitReader(rc, n))
}
