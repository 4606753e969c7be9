package jobrun

import (
	"bytes"
	"encoding/xml"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

func TestTransitions(t *testing.T) {
	for _, tc := range []struct {
		from Phase
		ev   Event
		to   Phase
		act  Action
	}{
		{PhaseWaiting, EvQueued, PhaseWaiting, ActNone},
		{PhaseWaiting, EvExecuting, PhaseRunning, ActNone},
		{PhaseWaiting, EvCompleted, PhaseDone, ActFinish},
		{PhaseWaiting, EvTimeout, PhaseCancelling, ActStop},
		{PhaseRunning, EvQueued, PhaseRunning, ActNone}, // a late older status never moves a job back
		{PhaseRunning, EvStopping, PhaseStopping, ActNone},
		{PhaseRunning, EvInterrupt, PhaseCancelling, ActStop},
		{PhaseRunning, EvCompleted, PhaseDone, ActFinish},
		{PhaseStopping, EvExecuting, PhaseStopping, ActNone},
		{PhaseStopping, EvTimeout, PhaseCancelling, ActStop},
		{PhaseCancelling, EvTimeout, PhaseCancelling, ActNone}, // one stop is enough
		{PhaseCancelling, EvInterrupt, PhaseCancelling, ActNone},
		{PhaseCancelling, EvStopping, PhaseCancelling, ActNone},
		{PhaseCancelling, EvCompleted, PhaseDone, ActFinish},
		{PhaseDone, EvCompleted, PhaseDone, ActNone},
		{PhaseDone, EvInterrupt, PhaseDone, ActNone},
	} {
		to, act := next(tc.from, tc.ev)
		if to != tc.to || act != tc.act {
			t.Errorf("%v on %d: %v %d, want %v %d", tc.from, tc.ev, to, act, tc.to, tc.act)
		}
	}
}

func TestTracker(t *testing.T) {
	tr := NewTracker("abc", "j")
	for _, s := range []string{"Pending", "Queued", "Executing"} {
		if changed, _ := tr.Observe(s); !changed {
			t.Fatalf("%s not a change", s)
		}
	}
	if changed, _ := tr.Observe("Executing"); changed || tr.Phase() != PhaseRunning {
		t.Fatalf("seen again: changed %v, phase %v", changed, tr.Phase())
	}
	if tr.Cancel(CauseTimeout) != ActStop || tr.Cause() != CauseTimeout {
		t.Fatal("timeout does not stop")
	}
	if tr.Cancel(CauseInterrupt) != ActNone || tr.Cause() != CauseTimeout {
		t.Fatal("a second cancel changed the cause")
	}
	if _, act := tr.Observe("Completed"); act != ActFinish || tr.Phase() != PhaseDone {
		t.Fatal("completion")
	}
}

func statuses(reason string, seq ...string) remote.Statuses {
	var s remote.Statuses
	for i := len(seq) - 1; i >= 0; i-- {
		st := remote.Status{Status: seq[i]}
		if seq[i] == remote.StatusCompleted || seq[i] == remote.StatusStopping {
			st.StatusReason = reason
		}
		s = append(s, st)
	}
	return s
}

func TestClassify(t *testing.T) {
	ok := statuses(remote.ReasonSucceeded, "Pending", "Executing", "Completed")
	log := func(lines ...string) []byte {
		var b bytes.Buffer
		for _, l := range lines {
			b.WriteString("[2026-01-01T00:00:00Z]: " + l + "\n")
		}
		return b.Bytes()
	}
	failOn := regexp.MustCompile(`^FAILURE`)
	for _, tc := range []struct {
		name   string
		cause  Cause
		st     remote.Statuses
		log    []byte
		failOn *regexp.Regexp
		code   int
	}{
		{"success", CauseNone, ok, log("Launching x", "ok", "Exited with code 0"), nil, ExitOK},
		{"non-zero exit under a success reason", CauseNone, ok, log("Exited with code 2"), nil, ExitJobFailed},
		{"post-processing failed", CauseNone, ok, log("Exited with code 0", "Exited with code 1"), nil, ExitJobFailed},
		{"failure reason", CauseNone, statuses("A run failed", "Executing", "Stopping", "Completed"), log("Exited with code 0"), nil, ExitJobFailed},
		{"compare prints FAILURE and exits 0", CauseNone, ok, log("FAILURE test b", "Exited with code 0"), failOn, ExitJobFailed},
		{"FAILURE inside a line does not match ^", CauseNone, ok, log("no FAILURE here", "Exited with code 0"), failOn, ExitOK},
		{"FAILURE without --fail-on", CauseNone, ok, log("FAILURE test b", "Exited with code 0"), nil, ExitOK},
		{"stopped by user", CauseNone, statuses("Job stopped by user", "Executing", "Stopping", "Completed"), nil, nil, ExitStopped},
		{"walltime", CauseNone, statuses("Walltime exceeded", "Executing", "Stopping", "Completed"), log("Exited with code 143"), nil, ExitStopped},
		{"our timeout", CauseTimeout, statuses("Job stopped by user", "Completed"), nil, nil, ExitStopped},
		{"our interrupt", CauseInterrupt, statuses("Job stopped by user", "Completed"), nil, nil, ExitStopped},
		{"not completed", CauseNone, statuses("", "Executing"), nil, nil, ExitFailure},
		// A progress bar redrawn with \r, or a blob dumped without a newline, makes one huge line: the
		// exit line after it still counts.
		{"exit after a 5 MiB line", CauseNone, ok, log(strings.Repeat("#", 5<<20), "Exited with code 1"), nil, ExitJobFailed},
		{"FAILURE after a 5 MiB line", CauseNone, ok, log(strings.Repeat("#", 5<<20), "FAILURE test c", "Exited with code 0"), failOn, ExitJobFailed},
	} {
		o := Classify(tc.cause, tc.st, tc.log, tc.failOn)
		if o.Code != tc.code {
			t.Errorf("%s: code %d (%s), want %d", tc.name, o.Code, o.Why, tc.code)
		}
	}
}

// TestRunOutcome: a DOE run passes or fails on its own log, but a run of a job that was stopped is
// stopped, whatever its killed command's exit code says.
func TestRunOutcome(t *testing.T) {
	log := func(lines ...string) []byte {
		var b bytes.Buffer
		for _, l := range lines {
			b.WriteString("[2026-01-01T00:00:00Z]: " + l + "\n")
		}
		return b.Bytes()
	}
	ok := Outcome{Code: ExitOK, Why: "completed successfully"}
	failed := Outcome{Code: ExitJobFailed, Why: "failed: A run failed"}
	stopped := Outcome{Code: ExitStopped, Why: "stopped: --timeout reached"}
	notDone := Outcome{Code: ExitFailure, Why: "not completed"}
	failOn := regexp.MustCompile(`^FAILURE`)
	for _, tc := range []struct {
		name string
		job  Outcome
		log  []byte
		code int
	}{
		{"passed", ok, log("Exited with code 0"), ExitOK},
		{"its own non-zero exit", failed, log("Exited with code 2"), ExitJobFailed},
		{"a passing run of a failed job", failed, log("Exited with code 0"), ExitOK},
		{"a run that never ran, of a failed job", failed, nil, ExitJobFailed},
		{"its own FAILURE line", ok, log("FAILURE case 3", "Exited with code 0"), ExitJobFailed},
		{"killed by the stop", stopped, log("Exited with code 143"), ExitStopped},
		{"killed by the stop after a FAILURE line", stopped, log("FAILURE case 1", "Exited with code 143"), ExitStopped},
		{"the platform failed", notDone, log("Exited with code 1"), ExitFailure},
	} {
		if o := RunOutcome(tc.job, tc.log, failOn); o.Code != tc.code {
			t.Errorf("%s: code %d (%s), want %d", tc.name, o.Code, o.Why, tc.code)
		}
	}
}

func TestWorst(t *testing.T) {
	for _, tc := range []struct {
		codes []int
		want  int
	}{
		{nil, ExitOK}, {[]int{0, 3, 0}, 3}, {[]int{3, 4}, 4}, {[]int{4, 1, 3}, 1}, {[]int{0}, 0},
	} {
		if got := Worst(tc.codes...); got != tc.want {
			t.Errorf("Worst(%v) = %d, want %d", tc.codes, got, tc.want)
		}
	}
}

func TestParseDirectives(t *testing.T) {
	d, err := ParseDirectives([]byte(`#!/bin/bash
#RESCALE_NAME="regression short"
#RESCALE_NAME=ignored: first occurrence wins
#RESCALE_ANALYSIS=user_included
#RESCALE_CORE_TYPE=Marble
#RESCALE_CORES=4
#RESCALE_WALLTIME=2
#RESCALE_ENV_SUITE=short
#RESCALE_ENV_LEVEL='3'
#RESCALE_EXISTING_FILES=abc, def
#USE_RESCALE_LICENSE
#RESCALE_LOW_PRIORITY=true
echo hi
`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "regression short" || d.Analysis != "user_included" || d.CoreType != "Marble" || d.Cores != 4 ||
		d.Walltime != 2 || d.Env["SUITE"] != "short" || d.Env["LEVEL"] != "3" || strings.Join(d.ExistingFiles, ",") != "abc,def" ||
		!d.RescaleLicense || !d.LowPriority || strings.Join(d.EnvOrder, ",") != "SUITE,LEVEL" {
		t.Fatalf("%+v", d)
	}
	for _, bad := range []string{
		"#RESCALE_CORES=four", "#RESCALE_CORES=0", "#RESCALE_WALLTIME=1.5", "#RESCALE_LOW_PRIORITY=maybe",
		"#RESCALE_CORES emerald", // the space-separated form of another client, not rescale-cli's
		"#RESCALE_COLOR=blue",
	} {
		if _, err := ParseDirectives([]byte("#!/bin/bash\n" + bad + "\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v, want an error naming line 2", bad, err)
		}
	}
}

func TestCatalog(t *testing.T) {
	cat := Catalog{
		CoreTypes: []remote.CoreType{{Code: "standard-plus", Name: "Marble", Cores: []int{1, 2}, Price: 0.1},
			{Code: "hpc-3", Name: "Onyx", Cores: []int{1}, WalltimeRequired: true, Price: 0.2}},
		Analyses: []remote.Analysis{{Code: "user_included", Versions: []remote.AnalysisVersion{{Version: "0", VersionCode: "0"}}},
			{Code: "openfoam", Name: "OpenFOAM", Versions: []remote.AnalysisVersion{{Version: "v2306", VersionCode: "2306"}}}},
	}
	if ct, err := cat.CoreType("marble"); err != nil || ct.Code != "standard-plus" {
		t.Fatalf("by name: %v %+v", err, ct)
	}
	_, err := cat.CoreType("onix")
	if err == nil || !strings.Contains(err.Error(), "closest: hpc-3 (Onyx)") {
		t.Fatalf("unknown core type: %v", err)
	}
	if _, v, err := cat.Analysis("OpenFOAM", "v2306"); err != nil || v != "2306" {
		t.Fatalf("analysis version: %v %q", err, v)
	}
	if _, _, err := cat.Analysis("openfom", ""); err == nil || !strings.Contains(err.Error(), "closest: openfoam") {
		t.Fatalf("unknown analysis: %v", err)
	}
	if err := checkHardware(cat.CoreTypes[1], 1, 0); err == nil || !strings.Contains(err.Error(), "requires a walltime") {
		t.Fatalf("walltime: %v", err)
	}
	if e := Estimate(cat.CoreTypes[0], 2, 3, 4, false); e < 2.39 || e > 2.41 {
		t.Fatalf("estimate %v", e)
	}
}

func TestJUnit(t *testing.T) {
	results := []Result{
		{JobID: "a1", Name: "short", Outcome: Outcome{Code: ExitOK}, Duration: time.Second},
		{JobID: "b2", Name: "long", Outcome: Outcome{Code: ExitJobFailed, Why: "failed: exited with code 2",
			Failures: []string{"[t]: Exited with code 2"}, Tail: []string{"[t]: FAILURE <x>"}}},
		{JobID: "c3", Name: "doe", Outcome: Outcome{Code: ExitJobFailed}, Runs: []RunResult{
			{ID: "1", Outcome: Outcome{Code: ExitOK}, Variables: []remote.RunVariable{{Name: "x", DisplayValue: "1"}}},
			{ID: "2", Outcome: Outcome{Code: ExitJobFailed}}}},
		{JobID: "d4", Name: "stopped", Outcome: Outcome{Code: ExitStopped}},
	}
	var b bytes.Buffer
	if err := WriteJUnit(&b, results); err != nil {
		t.Fatal(err)
	}
	var doc junitSuites
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	s := doc.Suites[0]
	if doc.Tests != 5 || doc.Failures != 2 || doc.Errors != 1 || len(s.Cases) != 5 || s.Cases[2].Name != "doe/run1 (x=1)" {
		t.Fatalf("%+v", doc)
	}
	if f := s.Cases[1].Failure; f == nil || !strings.Contains(f.Text, "Exited with code 2") || !strings.Contains(f.Text, "FAILURE <x>") {
		t.Fatalf("failure %+v", s.Cases[1])
	}
}

// TestBoard: lines go above the rows, which are cleared and redrawn around each line.
func TestBoard(t *testing.T) {
	var buf bytes.Buffer
	b := NewBoard(&buf, []string{"a", "b"})
	b.Set("a", "job a: Executing")
	p := NewPrinter(b, func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) })
	p.Linef("job b: Queued")
	b.Close()
	p.Linef("after")
	want := "" +
		"job a: Executing\njob b: submitted\n" + // Set draws the rows
		"\x1b[2A\x1b[J" + "2026-01-01T00:00:00Z  job b: Queued\n" + "job a: Executing\njob b: submitted\n" +
		"2026-01-01T00:00:00Z  after\n" // after Close, plain lines below the rows
	if got := buf.String(); got != want {
		t.Fatalf("got\n%q\nwant\n%q", got, want)
	}
}
