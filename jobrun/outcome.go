package jobrun

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/rescalefs/rescalefs/remote"
)

// Exit codes of submit and wait: the outcome, not the status name (DESIGN.md, "Jobs").
const (
	ExitOK        = 0 // every job completed successfully
	ExitFailure   = 1 // rescalefs or the platform failed: upload, create, network
	ExitUsage     = 2 // the command line is wrong, or asks for something refused before anything is created
	ExitJobFailed = 3 // a job ran and failed: non-zero exit, a failure reason, or a --fail-on line
	ExitStopped   = 4 // a job was stopped, cancelled or timed out
)

// severity orders exit codes for Worst: not knowing the result (rescalefs failed) is worse than a job
// that did not finish, which is worse than a job that finished and failed.
var severity = map[int]int{ExitOK: 0, ExitJobFailed: 1, ExitStopped: 2, ExitFailure: 3, ExitUsage: 4}

// Worst is the exit code of several jobs.
func Worst(codes ...int) int {
	w := ExitOK
	for _, c := range codes {
		if severity[c] > severity[w] {
			w = c
		}
	}
	return w
}

// stoppedReasons are status reasons of a job that did not run to its end [C/I]: a user stop, the
// walltime.
var stoppedReasons = []string{"stopped", "walltime", "timed out", "cancel"}

// exitedLine is the line a run's process_output.log ends each command with [C]: the only place the
// command's exit status shows.
var exitedLine = regexp.MustCompile(`^\[[^\]]*\]: Exited with code (-?\d+)\s*$`)

// logPrefix is the time stamp Rescale puts before each log line.
var logPrefix = regexp.MustCompile(`^\[[^\]]*\]: `)

// tailLines is how many log lines an outcome keeps for JUnit and the summary.
const tailLines = 20

// Outcome is how a job (or one run of it) ended.
type Outcome struct {
	Code      int      // ExitOK, ExitJobFailed, ExitStopped or ExitFailure
	Why       string   // one line: "completed successfully", "exited with code 2", ...
	Status    string   // the last status name
	Reason    string   // the Completed status reason
	ExitCodes []int    // every "Exited with code N" of the log, in order
	Failures  []string // the lines that made it fail: non-zero exits and --fail-on matches
	Tail      []string // the last lines of the log
}

// Classify reads the outcome of a job from its status history and the logs of its runs. cause is
// CauseNone unless the waiter cancelled the job itself.
func Classify(cause Cause, statuses remote.Statuses, log []byte, failOn *regexp.Regexp) Outcome {
	o := Outcome{Status: statuses.Latest().Status}
	for _, s := range statuses {
		if s.Status == remote.StatusCompleted {
			o.Reason = s.StatusReason
			break
		}
	}
	scanLog(&o, log, failOn)
	switch {
	case cause == CauseTimeout:
		o.Code, o.Why = ExitStopped, "stopped: --timeout reached"
	case cause == CauseInterrupt:
		o.Code, o.Why = ExitStopped, "stopped: the waiter was interrupted"
	case o.Status != remote.StatusCompleted:
		o.Code, o.Why = ExitFailure, "not completed (status "+o.Status+")"
	case o.Reason != remote.ReasonSucceeded && isStopReason(o.Reason):
		o.Code, o.Why = ExitStopped, "stopped: "+o.Reason
	case o.Reason != remote.ReasonSucceeded:
		o.Code, o.Why = ExitJobFailed, "failed: "+orUnknown(o.Reason)
	default:
		o.Code, o.Why = ExitOK, "completed successfully"
	}
	o.judgeLog()
	return o
}

// judgeLog lets the log fail a job that completed: a non-zero exit, else a --fail-on line. A job that
// was stopped or whose end is unknown keeps that verdict: its killed command's exit code says nothing.
func (o *Outcome) judgeLog() {
	if o.Code != ExitOK && o.Code != ExitJobFailed {
		return
	}
	for _, c := range o.ExitCodes {
		if c != 0 {
			o.Code, o.Why = ExitJobFailed, fmt.Sprintf("failed: exited with code %d", c)
			return
		}
	}
	if o.Code == ExitOK && len(o.Failures) > 0 {
		o.Code, o.Why = ExitJobFailed, fmt.Sprintf("failed: %d line(s) match --fail-on", len(o.Failures))
	}
}

// RunOutcome is the outcome of one run of a job from its own log: a DOE's runs pass or fail alone.
func RunOutcome(job Outcome, log []byte, failOn *regexp.Regexp) Outcome {
	o := Outcome{Status: job.Status, Reason: job.Reason}
	scanLog(&o, log, failOn)
	o.Code, o.Why = ExitOK, "completed successfully"
	if job.Code == ExitStopped || job.Code == ExitFailure {
		o.Code, o.Why = job.Code, job.Why
	}
	o.judgeLog()
	if o.Code == ExitOK && len(o.ExitCodes) == 0 && job.Code == ExitJobFailed {
		o.Code, o.Why = ExitJobFailed, job.Why // a run that never ran its command
	}
	return o
}

// maxTailLine bounds a line kept in Tail (JUnit, the summary); the whole line is still matched.
const maxTailLine = 4 << 10

// scanLog reads every line of the log, however long: a line-length limit (bufio.Scanner's) would end the
// scan at the first huge line (a progress bar redrawn with \r, a dumped blob) and miss the exit lines and
// FAILURE lines after it.
func scanLog(o *Outcome, log []byte, failOn *regexp.Regexp) {
	for len(log) > 0 {
		b := log
		if i := bytes.IndexByte(log, '\n'); i >= 0 {
			b, log = log[:i], log[i+1:]
		} else {
			log = nil
		}
		line := string(bytes.TrimSuffix(b, []byte("\r")))
		if m := exitedLine.FindStringSubmatch(line); m != nil {
			c, _ := strconv.Atoi(m[1])
			o.ExitCodes = append(o.ExitCodes, c)
			if c != 0 {
				o.Failures = append(o.Failures, line)
			}
		} else if failOn != nil && failOn.MatchString(logPrefix.ReplaceAllString(line, "")) {
			o.Failures = append(o.Failures, line)
		}
		if len(line) > maxTailLine {
			line = line[:maxTailLine] + "..."
		}
		o.Tail = append(o.Tail, line)
		if len(o.Tail) > 2*tailLines {
			o.Tail = append(o.Tail[:0], o.Tail[len(o.Tail)-tailLines:]...)
		}
	}
	if len(o.Tail) > tailLines {
		o.Tail = o.Tail[len(o.Tail)-tailLines:]
	}
}

func isStopReason(r string) bool {
	l := strings.ToLower(r)
	for _, s := range stoppedReasons {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}
