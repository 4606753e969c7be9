package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/download"
	"github.com/rescalefs/rescalefs/jobrun"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

func init() {
	commands = append(commands,
		command{"submit", "submit [flags] [SCRIPT...]", "create and submit jobs (regression tests, DOE); --wait to follow them", runSubmit},
		command{"wait", "wait [flags] JOB...", "follow jobs to the end; the exit code tells the outcome", runWait},
		command{"stop", "stop JOB...", "stop jobs", runStop},
	)
}

// exitCodesHelp documents the outcome codes of submit --wait and wait.
const exitCodesHelp = `Exit codes (with several jobs, the worst: 1, then 4, then 3):
  0  every job completed successfully
  3  a job ran and failed: a non-zero "Exited with code N" in process_output.log, a status
     reason other than "Completed successfully", or a line matching --fail-on
  4  a job was stopped, cancelled or timed out (--timeout, SIGINT/SIGTERM, walltime)
  1  rescalefs or the platform failed (upload, create, network); a job it leaves running
     is named, with the rescalefs wait and rescalefs stop commands for it
  2  usage: bad flags or directives, unknown core type or analysis, missing walltime, --max-cost`

// connFlags are the credential flags every platform command takes.
type connFlags struct{ key, url, profile, config string }

func addConnFlags(fl *pflag.FlagSet, c *connFlags) {
	fl.StringVar(&c.key, "api-key", "", "Rescale API key (prefer RESCALE_API_KEY or ~/.config/rescale/apiconfig: flags show in ps)")
	fl.StringVar(&c.url, "api-url", "", "platform URL, e.g. https://eu.rescale.com (default "+defaultAPIURL+")")
	fl.StringVar(&c.profile, "profile", "", "profile section of ~/.config/rescale/apiconfig")
	fl.StringVar(&c.config, "config", defaultConfigPath(), "the apiconfig file of profiles")
}

func (c connFlags) client(logger *slog.Logger) (*remote.Client, error) {
	creds, err := resolveCredentials(credentialInputs{FlagKey: c.key, FlagURL: c.url, Profile: c.profile,
		Getenv: os.Getenv, ConfigPath: c.config})
	if err != nil {
		return nil, err
	}
	return remote.New(remote.Options{BaseURL: creds.URL, APIKey: creds.Key, Logger: logger})
}

// waitFlags are the flags of following jobs, shared by submit --wait and wait.
type waitFlags struct {
	follow    bool
	timeout   time.Duration
	failOn    string
	poll      time.Duration
	heartbeat time.Duration
	junit     string
	detach    bool
	download  string
	query     string
}

func addWaitFlags(fl *pflag.FlagSet, w *waitFlags) {
	fl.BoolVar(&w.follow, "follow", false, "stream process_output.log while a job runs, then what post-processing wrote")
	fl.DurationVar(&w.timeout, "timeout", 0, "stop a job that runs longer than this (exit 4)")
	fl.StringVar(&w.failOn, "fail-on", "", "a job whose log has a line matching this regular expression failed (exit 3), e.g. '^FAILURE'")
	fl.DurationVar(&w.poll, "poll", jobrun.DefaultPoll, "how often job statuses are checked")
	fl.DurationVar(&w.heartbeat, "heartbeat", jobrun.DefaultHeartbeat, "print a line at least this often while waiting")
	fl.StringVar(&w.junit, "junit", "", "write JUnit XML to FILE: one test case per job (per run for DOE)")
	fl.StringVar(&w.download, "download", "", "at the end, copy each completed job's outputs into DIR/<jobId>/")
	fl.StringVar(&w.query, "query", "", "with --download: only files whose name contains TEXT")
}

func (w waitFlags) options(out *jobrun.Printer) (jobrun.WaitOptions, error) {
	o := jobrun.WaitOptions{Poll: w.poll, Heartbeat: w.heartbeat, Timeout: w.timeout, Follow: w.follow,
		Detach: w.detach, Out: out}
	if w.query != "" && w.download == "" {
		return o, errors.New("--query needs --download DIR")
	}
	if w.poll <= 0 || w.heartbeat <= 0 || w.timeout < 0 {
		return o, errors.New("--poll and --heartbeat must be positive, --timeout not negative")
	}
	if w.failOn != "" {
		re, err := regexp.Compile(w.failOn)
		if err != nil {
			return o, fmt.Errorf("--fail-on: %v", err)
		}
		o.FailOn = re
	}
	return o, nil
}

// interrupts closes its channel on the first SIGINT or SIGTERM (the waiters then stop their jobs and
// wait for them to end); a second signal leaves at once with exit 4, without waiting any longer.
func interrupts(stderr io.Writer) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case <-sig:
			close(ch)
		case <-done:
			return
		}
		select {
		case <-sig:
			fmt.Fprintln(stderr, "rescalefs: interrupted again: leaving without waiting for the jobs to end")
			os.Exit(jobrun.ExitStopped)
		case <-done:
		}
	}()
	return ch, func() { signal.Stop(sig); close(done) }
}

// waitAll follows jobs concurrently, then prints the summary (several jobs) and writes JUnit.
func waitAll(ctx context.Context, c *remote.Client, jobs []jobrun.Submitted, wf waitFlags, o jobrun.WaitOptions,
	interrupt <-chan struct{}, stdout, stderr io.Writer) int {
	results := make([]jobrun.Result, len(jobs))
	var board *jobrun.Board
	if len(jobs) > 1 && !o.Follow && isTerminal(stdout) {
		// One live row per job; the status lines scroll above the rows.
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.JobID
		}
		board = jobrun.NewBoard(stdout, ids)
		o.Out = jobrun.NewPrinter(board, nil)
	}
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			jo := o
			if len(jobs) > 1 {
				jo.Prefix = "[" + j.JobID + "] "
			}
			if board != nil {
				jo.Row = func(text string) { board.Set(j.JobID, text) }
			}
			results[i] = jobrun.Wait(ctx, c, jobrun.NewTracker(j.JobID, j.Name), jo, interrupt)
		}()
	}
	wg.Wait()
	if board != nil {
		board.Close()
	}
	codes := make([]int, len(results))
	for i, r := range results {
		codes[i] = r.Outcome.Code
	}
	if len(results) > 1 {
		fmt.Fprintln(stdout)
		_ = jobrun.WriteSummary(stdout, results)
	}
	code := jobrun.Worst(codes...)
	if wf.download != "" {
		if err := downloadOutputs(ctx, c, results, wf, o.Out); err != nil {
			fmt.Fprintf(stderr, "rescalefs: --download: %v\n", err)
			code = jobrun.Worst(code, exitFailure)
		}
	}
	if wf.junit != "" {
		if err := writeJUnitFile(wf.junit, results); err != nil {
			fmt.Fprintf(stderr, "rescalefs: --junit: %v\n", err)
			code = jobrun.Worst(code, exitFailure)
		}
	}
	return code
}

// downloadOutputs copies the outputs of the jobs that completed into DIR/<jobId>/, through a cache and
// fetcher as the mount's (memory tier only: a one-shot copy has nothing to re-read).
func downloadOutputs(ctx context.Context, c *remote.Client, results []jobrun.Result, wf waitFlags, out *jobrun.Printer) error {
	var ids []string
	for _, r := range results {
		if r.Outcome.Status == remote.StatusCompleted {
			ids = append(ids, r.JobID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	blocks, err := cache.New(c, cache.Options{MemoryBytes: 128 << 20, Permanent: permanentError})
	if err != nil {
		return err
	}
	defer blocks.Close()
	err = download.FetchJobs(ctx, download.Options{Client: c, Cache: blocks, Dir: wf.download, Query: wf.query}, ids...)
	if err == nil {
		for _, id := range ids {
			out.Linef("job %s: outputs in %s", id, filepath.Join(wf.download, id))
		}
	}
	return err
}

func writeJUnitFile(path string, results []jobrun.Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := jobrun.WriteJUnit(f, results); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// submitFlags are submit's job flags; which ones were given decides what overrides a script's directives.
type submitFlags struct {
	name, analysis, analysisVersion, coreType string
	cores, slots, walltime                    int
	inputs                                    []string
	noDecompress                              bool
	command, postCommand                      string
	env                                       []string
	lowPriority, rescaleLicense               bool
	doeParams                                 string
	templates                                 []string
	wait                                      bool
	runID                                     string
	maxCost                                   float64
	cacheDir                                  string
}

func runSubmit(args []string, stdout, stderr io.Writer) int {
	var conn connFlags
	var sf submitFlags
	var wf waitFlags
	fl := pflag.NewFlagSet("submit", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	addConnFlags(fl, &conn)
	fl.StringVar(&sf.name, "name", "", "job name (default: the script's #RESCALE_NAME, else its file name, else rescalefs-job)")
	fl.StringVar(&sf.analysis, "analysis", "", "analysis (software) code (default "+remote.UserIncludedAnalysis+": the command runs as given)")
	fl.StringVar(&sf.analysisVersion, "analysis-version", "", "analysis version (default: the latest)")
	fl.StringVar(&sf.coreType, "core-type", "", "core type: code or display name, e.g. standard-plus or Marble")
	fl.IntVar(&sf.cores, "cores", 0, "cores per slot (default: the core type's smallest)")
	fl.IntVar(&sf.slots, "slots", 0, "runs at once (DOE); default 1")
	fl.IntVar(&sf.walltime, "walltime", 0, "maximum run time in hours (required by some core types)")
	fl.StringArrayVar(&sf.inputs, "input", nil, "input: a local PATH (reused when the library has the same bytes, else uploaded), files/NAME (newest library file of exactly that name) or id:ID; repeatable, order kept (later archives unpack over earlier ones)")
	fl.BoolVar(&sf.noDecompress, "no-decompress", false, "do not unpack archive inputs on the cluster")
	fl.StringVar(&sf.command, "command", "", "the command the job runs (a SCRIPT's is ./run.sh)")
	fl.StringVar(&sf.postCommand, "post-command", "", "post-processing command, run after the command in the same directory")
	fl.StringArrayVar(&sf.env, "env", nil, "environment variable K=V of the job (repeatable)")
	fl.BoolVar(&sf.lowPriority, "low-priority", false, "run on low-priority (cheaper, preemptible) hardware")
	fl.BoolVar(&sf.rescaleLicense, "rescale-license", false, "use Rescale's license of the analysis")
	fl.StringVar(&sf.doeParams, "doe-params", "", "DOE parameter table (CSV, header = variable names, one run per row): PATH or files/NAME")
	fl.StringArrayVar(&sf.templates, "template", nil, "DOE template SRC:PROCESSED_PATH, placeholders ${name} and ${name?string(\"0.00\")} (repeatable)")
	fl.BoolVar(&sf.wait, "wait", false, "wait for the jobs and exit with their outcome")
	fl.StringVar(&sf.runID, "run-id", "", "mark the jobs with ID; a submit with the same ID attaches to them instead of creating them again")
	fl.Float64Var(&sf.maxCost, "max-cost", 0, "refuse a job whose estimate (price x cores x slots x walltime) is above this")
	fl.StringVar(&sf.cacheDir, "cache-dir", defaultCacheDir(), "where uploads are staged")
	addWaitFlags(fl, &wf)
	fl.BoolVar(&wf.detach, "detach", false, "on SIGINT/SIGTERM leave the jobs running (default: stop them)")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs submit [flags] [SCRIPT...]\n\nCreates and submits one job per SCRIPT (rescale-cli #RESCALE_* directives are read; the script\nbecomes the job's run.sh and the command ./run.sh; flags override directives), or one job from\nflags. With --wait it follows them and exits with their outcome.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
		fmt.Fprintln(w, "\n"+exitCodesHelp)
	}
	if code, done := parseFlags(fl, args, -1, "submit", usage, stdout, stderr); done {
		return code
	}
	usageErr := func(err error) int {
		fmt.Fprintf(stderr, "rescalefs submit: %v\n", err)
		return exitUsage
	}
	reqs, err := buildRequests(fl, sf, fl.Args())
	if err != nil {
		return usageErr(err)
	}
	var wo jobrun.WaitOptions
	progress := stderr // without --wait, stdout carries only the job ids
	if sf.wait {
		progress = stdout
	}
	out := jobrun.NewPrinter(progress, nil)
	if wo, err = wf.options(out); err != nil {
		return usageErr(err)
	}
	if !sf.wait && (wf.follow || wf.junit != "" || wf.timeout > 0 || wf.failOn != "" || wf.download != "") {
		return usageErr(errors.New("--follow, --junit, --timeout, --fail-on and --download need --wait"))
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := conn.client(logger)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs submit: %v\n", err)
		return exitFailure
	}
	interrupt, stopSignals := interrupts(stderr)
	defer stopSignals()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	inputs := jobrun.NewInputs(c)
	sub := &jobrun.Submitter{C: c, Inputs: inputs, Out: out, RunID: sf.runID, MaxCost: sf.maxCost}
	plans, err := sub.Plan(ctx, reqs)
	var ue *jobrun.UsageError
	if errors.As(err, &ue) {
		return usageErr(err)
	}
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs submit: %v\n", err)
		return exitFailure
	}
	if needsUpload(reqs) {
		if err := os.MkdirAll(filepath.Join(sf.cacheDir, "submit"), 0o700); err != nil {
			fmt.Fprintf(stderr, "rescalefs submit: %v\n", err)
			return exitFailure
		}
		dir, err := os.MkdirTemp(filepath.Join(sf.cacheDir, "submit"), "up-")
		if err != nil {
			fmt.Fprintf(stderr, "rescalefs submit: %v\n", err)
			return exitFailure
		}
		defer os.RemoveAll(dir)
		eng, err := inputs.NewUploadEngine(upload.Options{Dir: dir, Logger: logger})
		if err != nil {
			fmt.Fprintf(stderr, "rescalefs submit: %v\n", err)
			return exitFailure
		}
		defer eng.Close()
	}
	// A signal during uploads and creation cancels them; jobs already created are then stopped below.
	go func() {
		select {
		case <-interrupt:
			cancel()
		case <-ctx.Done():
		}
	}()
	jobs, err := sub.Submit(ctx, plans)
	var created []jobrun.Submitted
	for _, j := range jobs {
		if j.JobID != "" {
			created = append(created, j)
		}
	}
	if err != nil || ctx.Err() != nil {
		code := exitFailure
		if err != nil {
			// A body the platform rejects (*remote.JobRejectedError) after our own checks passed is the
			// platform disagreeing: exit 1, with its field errors in the message.
			if errors.As(err, &ue) {
				code = exitUsage
			}
			fmt.Fprintf(stderr, "rescalefs submit: %v\n", err)
		}
		if ctx.Err() != nil {
			code = jobrun.ExitStopped
		}
		if !wf.detach {
			stopJobs(c, created, out)
		}
		return code
	}
	if !sf.wait {
		for _, j := range created {
			fmt.Fprintln(stdout, j.JobID)
		}
		return exitOK
	}
	return waitAll(context.Background(), c, created, wf, wo, interrupt, stdout, stderr)
}

// stopJobs stops jobs created before a failure or an interrupt: a CI runner that gives up must not
// leave clusters running.
func stopJobs(c *remote.Client, jobs []jobrun.Submitted, out *jobrun.Printer) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, j := range jobs {
		if err := c.StopJob(ctx, j.JobID); err != nil {
			out.Linef("job %s: stop: %v", j.JobID, err)
		} else {
			out.Linef("job %s: stopped", j.JobID)
		}
	}
}

func needsUpload(reqs []jobrun.JobRequest) bool {
	for _, r := range reqs {
		for _, in := range r.Inputs {
			if in.Kind == jobrun.InputLocal {
				return true
			}
		}
		for _, t := range r.Templates {
			if t.Src.Kind == jobrun.InputLocal {
				return true
			}
		}
		if r.ParamFile != nil && r.ParamFile.Kind == jobrun.InputLocal {
			return true
		}
	}
	return false
}

// buildRequests turns flags and scripts into job requests: one per SCRIPT (its directives, overridden by
// the flags given), or one from the flags alone.
func buildRequests(fl *pflag.FlagSet, sf submitFlags, scripts []string) ([]jobrun.JobRequest, error) {
	if sf.cores < 0 || sf.slots < 0 || sf.walltime < 0 || sf.maxCost < 0 {
		return nil, errors.New("--cores, --slots, --walltime and --max-cost cannot be negative")
	}
	var common []jobrun.Input
	for _, s := range sf.inputs {
		in, err := jobrun.ParseInput(s, !sf.noDecompress)
		if err != nil {
			return nil, err
		}
		common = append(common, in)
	}
	env := map[string]string{}
	for _, kv := range sf.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--env %q: want K=V", kv)
		}
		env[k] = v
	}
	var param *jobrun.Input
	if sf.doeParams != "" {
		in, err := jobrun.ParseInput(sf.doeParams, false)
		if err != nil {
			return nil, err
		}
		param = &in
	}
	var templates []jobrun.Template
	for _, t := range sf.templates {
		src, dst, ok := strings.Cut(t, ":")
		if !ok || src == "" || dst == "" || strings.HasPrefix(dst, "/") {
			return nil, fmt.Errorf("--template %q: want SRC:PROCESSED_PATH (a relative path in the work directory)", t)
		}
		in, err := jobrun.ParseInput(src, false)
		if err != nil {
			return nil, err
		}
		templates = append(templates, jobrun.Template{Src: in, Processed: dst})
	}
	if len(templates) > 0 && param == nil {
		return nil, errors.New("--template needs --doe-params")
	}
	base := jobrun.JobRequest{Name: "rescalefs-job", Analysis: sf.analysis, AnalysisVersion: sf.analysisVersion,
		CoreType: sf.coreType, Cores: sf.cores, Slots: sf.slots, Walltime: sf.walltime, Command: sf.command,
		PostCommand: sf.postCommand, LowPriority: sf.lowPriority, RescaleLicense: sf.rescaleLicense,
		ParamFile: param, Templates: templates}
	if sf.name != "" {
		base.Name = sf.name
	}
	if len(scripts) == 0 {
		base.Inputs, base.Env = common, env
		return []jobrun.JobRequest{base}, nil
	}
	if fl.Changed("name") && len(scripts) > 1 {
		return nil, errors.New("--name names one job; with several scripts use #RESCALE_NAME= in each")
	}
	var reqs []jobrun.JobRequest
	for _, s := range scripts {
		b, err := os.ReadFile(s)
		if err != nil {
			return nil, fmt.Errorf("script %s: %v", s, errors.Unwrap(err))
		}
		d, err := jobrun.ParseDirectives(b)
		if err != nil {
			return nil, fmt.Errorf("script %s: %v", s, err)
		}
		r := base
		r.Name = strings.TrimSuffix(filepath.Base(s), filepath.Ext(s))
		set := func(flag, directive string, apply func()) {
			if !fl.Changed(flag) && d.Set[directive] {
				apply()
			}
		}
		set("name", "NAME", func() { r.Name = d.Name })
		if fl.Changed("name") {
			r.Name = sf.name
		}
		set("analysis", "ANALYSIS", func() { r.Analysis = d.Analysis })
		set("analysis-version", "ANALYSIS_VERSION", func() { r.AnalysisVersion = d.AnalysisVersion })
		set("core-type", "CORE_TYPE", func() { r.CoreType = d.CoreType })
		set("cores", "CORES", func() { r.Cores = d.Cores })
		set("walltime", "WALLTIME", func() { r.Walltime = d.Walltime })
		set("low-priority", "LOW_PRIORITY", func() { r.LowPriority = d.LowPriority })
		if !fl.Changed("rescale-license") && d.RescaleLicense {
			r.RescaleLicense = true
		}
		r.Env = map[string]string{}
		for _, k := range d.EnvOrder {
			r.Env[k] = d.Env[k]
		}
		for k, v := range env {
			r.Env[k] = v
		}
		r.ExistingFiles = d.ExistingFiles
		script, err := jobrun.ParseInput(s, false)
		if err != nil {
			return nil, err
		}
		script.Name = "run.sh" // as rescale-cli uploads it [C]
		r.Inputs = append(append([]jobrun.Input(nil), common...), script)
		if !fl.Changed("command") {
			r.Command = "./run.sh"
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

func runWait(args []string, stdout, stderr io.Writer) int {
	var conn connFlags
	var wf waitFlags
	fl := pflag.NewFlagSet("wait", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	addConnFlags(fl, &conn)
	addWaitFlags(fl, &wf)
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs wait [flags] JOB...\n\nFollows jobs submitted earlier to their end and exits with their outcome. SIGINT or SIGTERM\nends the wait and leaves the jobs running (exit 4); --timeout stops them.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
		fmt.Fprintln(w, "\n"+exitCodesHelp)
	}
	if code, done := parseFlags(fl, args, -1, "wait", usage, stdout, stderr); done {
		return code
	}
	if fl.NArg() == 0 {
		fmt.Fprintln(stderr, "rescalefs wait: name at least one JOB (see rescalefs wait --help)")
		return exitUsage
	}
	wf.detach = true // wait did not submit the jobs: an interrupt ends the wait, not the jobs
	out := jobrun.NewPrinter(stdout, nil)
	wo, err := wf.options(out)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs wait: %v\n", err)
		return exitUsage
	}
	c, err := conn.client(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs wait: %v\n", err)
		return exitFailure
	}
	interrupt, stopSignals := interrupts(stderr)
	defer stopSignals()
	var jobs []jobrun.Submitted
	for _, id := range fl.Args() {
		j, err := c.GetJob(context.Background(), id)
		if err != nil {
			fmt.Fprintf(stderr, "rescalefs wait: job %s: %v\n", id, err)
			return exitFailure
		}
		jobs = append(jobs, jobrun.Submitted{JobID: id, Name: j.Name})
	}
	return waitAll(context.Background(), c, jobs, wf, wo, interrupt, stdout, stderr)
}

func runStop(args []string, stdout, stderr io.Writer) int {
	var conn connFlags
	var runs []string
	fl := pflag.NewFlagSet("stop", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	addConnFlags(fl, &conn)
	fl.StringSliceVar(&runs, "run", nil, "stop only these runs of the JOB (a DOE's rows, e.g. --run 3 or --run 2,5); its other runs go on")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs stop JOB...\n       rescalefs stop JOB --run N[,N...]\n\nAsks the platform to stop jobs, or single runs of one job.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
	}
	if code, done := parseFlags(fl, args, -1, "stop", usage, stdout, stderr); done {
		return code
	}
	if fl.NArg() == 0 {
		fmt.Fprintln(stderr, "rescalefs stop: name at least one JOB (see rescalefs stop --help)")
		return exitUsage
	}
	if len(runs) > 0 && fl.NArg() != 1 {
		fmt.Fprintln(stderr, "rescalefs stop: --run names runs of one JOB: name exactly one")
		return exitUsage
	}
	for i, r := range runs {
		r = strings.TrimPrefix(r, "run") // run3, as the mount names it, or 3
		runs[i] = r
		if r == "" || strings.ContainsAny(r, "/ ") {
			fmt.Fprintf(stderr, "rescalefs stop: --run %q: want a run id, as `ls jobs/JOB/` shows run<N>\n", r)
			return exitUsage
		}
	}
	c, err := conn.client(nil)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs stop: %v\n", err)
		return exitFailure
	}
	code := exitOK
	if len(runs) > 0 {
		id := fl.Arg(0)
		for _, r := range runs {
			if err := c.StopRun(context.Background(), id, r); err != nil {
				fmt.Fprintf(stderr, "rescalefs stop: job %s run %s: %v\n", id, r, err)
				code = exitFailure
				continue
			}
			fmt.Fprintf(stdout, "job %s run %s: stop requested\n", id, r)
		}
		return code
	}
	for _, id := range fl.Args() {
		if err := c.StopJob(context.Background(), id); err != nil {
			fmt.Fprintf(stderr, "rescalefs stop: job %s: %v\n", id, err)
			code = exitFailure
			continue
		}
		fmt.Fprintf(stdout, "job %s: stop requested\n", id)
	}
	return code
}
