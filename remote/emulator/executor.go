package emulator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The local executor (`rescalefs emulator --run-jobs`) runs submitted jobs on this machine as a Rescale
// cluster would: one work directory per run, the inputs fetched and unpacked in list order, the command
// then the post-processing command under bash, their output time-stamped into process_output.log (live
// through directory-contents and tail), the walltime enforced, a stop killing the process group, and
// the files the run created or changed published as its outputs. It runs the submitted commands as the
// user who started the emulator: that is the point, a job script is tried before it costs cluster time.

// ReasonWalltime is the statusReason of a job killed at its walltime [I]: the sources show none.
const ReasonWalltime = "Walltime exceeded"

// ReasonEmulatorRestarted ends a job whose executor died with a previous emulator process [I].
const ReasonEmulatorRestarted = "A run failed: the emulator restarted while the job executed"

// ReasonEmulatorClosed ends a job killed because the emulator was shut down [I].
const ReasonEmulatorClosed = "A run failed: the emulator stopped while the job executed"

// stopGrace is how long a stopped command has between SIGTERM and SIGKILL [I].
const stopGrace = 2 * time.Second

// exitNotStarted is the exit code logged when bash itself cannot start: what a shell says of a command
// it cannot find.
const exitNotStarted = 127

// executor owns the running jobs: one goroutine per job, killed on stop or Close.
type executor struct {
	e            *Emulator
	dir          string        // work directories: dir/<jobId>/run<N>/
	walltimeUnit time.Duration // an hour of walltime (tests shorten it)

	mu      sync.Mutex // guards running and closed
	running map[string]*execution
	closed  bool
	wg      sync.WaitGroup
}

// execution is one job being run; stop closes stopped once, with the reason the job will end with.
type execution struct {
	stopOnce sync.Once
	stopped  chan struct{}
	reason   string // written before stopped is closed

	mu        sync.Mutex                         // guards runStop and runCancel
	runStop   map[string]bool                    // runs asked to stop (started or not)
	runCancel map[string]context.CancelCauseFunc // runs under way
}

// errRunStopped ends the context of one run stopped on its own (POST .../runs/{run}/stop/).
var errRunStopped = errors.New("run stopped")

// stopRun stops run id: at once when it is under way, else as soon as its turn comes.
func (x *execution) stopRun(id string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.runStop == nil {
		x.runStop = map[string]bool{}
	}
	x.runStop[id] = true
	if cancel := x.runCancel[id]; cancel != nil {
		cancel(errRunStopped)
	}
}

// runContext is the context of run id under the job's ctx, already ended when the run was asked to
// stop before its turn; done releases it.
func (x *execution) runContext(ctx context.Context, id string) (rctx context.Context, done func()) {
	rctx, cancel := context.WithCancelCause(ctx)
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.runStop[id] {
		cancel(errRunStopped)
	} else {
		if x.runCancel == nil {
			x.runCancel = map[string]context.CancelCauseFunc{}
		}
		x.runCancel[id] = cancel
	}
	return rctx, func() {
		x.mu.Lock()
		delete(x.runCancel, id)
		x.mu.Unlock()
		cancel(nil)
	}
}

func (x *execution) stop(reason string) {
	x.stopOnce.Do(func() {
		x.reason = reason
		close(x.stopped)
	})
}

func newExecutor(e *Emulator, dir string, walltimeUnit time.Duration) (*executor, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("emulator work dir: %w", err)
	}
	if walltimeUnit <= 0 {
		walltimeUnit = time.Hour
	}
	return &executor{e: e, dir: dir, walltimeUnit: walltimeUnit, running: map[string]*execution{}}, nil
}

// start runs job jobID from at on (the end of its queueing phases).
func (x *executor) start(jobID string, at time.Time) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed || x.running[jobID] != nil {
		return
	}
	ex := &execution{stopped: make(chan struct{})}
	x.running[jobID] = ex
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		x.runJob(jobID, at, ex)
		x.mu.Lock()
		delete(x.running, jobID)
		x.mu.Unlock()
	}()
}

// stop kills a running job's commands; the job then completes with ReasonUserStopped.
func (x *executor) stop(jobID string) {
	x.mu.Lock()
	ex := x.running[jobID]
	x.mu.Unlock()
	if ex != nil {
		ex.stop(ReasonUserStopped)
	}
}

// stopRun stops one run of a running job; the job's other runs go on.
func (x *executor) stopRun(jobID, runID string) {
	x.mu.Lock()
	ex := x.running[jobID]
	x.mu.Unlock()
	if ex != nil {
		ex.stopRun(runID)
	}
}

// close stops every job and waits for their goroutines.
func (x *executor) close() {
	x.mu.Lock()
	x.closed = true
	for _, ex := range x.running {
		ex.stop(ReasonEmulatorClosed)
	}
	x.mu.Unlock()
	x.wg.Wait()
}

// runPlan is what one run needs: its id, work directory and variables.
type runPlan struct {
	id   string
	dir  string
	vars []runVariable
}

// runJob is the life of one job: wait for Executing, plan the runs (one per DOE row), run them
// `slots` at a time within the walltime, and record how it ended.
func (x *executor) runJob(jobID string, at time.Time, ex *execution) {
	log := x.e.log.With("job", jobID)
	// A stop that came between the submit's commit and start found nothing to stop; it is in the
	// record. (Registered in running before this read, a later stop reaches ex.)
	x.e.mu.RLock()
	j, ok := x.e.st.jobs[jobID]
	stopped := ok && !j.StopAt.IsZero()
	x.e.mu.RUnlock()
	if stopped {
		x.finish(jobID, ReasonUserStopped)
		return
	}
	if d := at.Sub(x.e.now()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ex.stopped:
			t.Stop()
			x.finish(jobID, ex.reason)
			return
		}
	}
	x.e.mu.RLock()
	j, ok = x.e.st.jobs[jobID]
	var spec *jobSpecJSON
	if ok {
		spec = j.Spec
	}
	x.e.mu.RUnlock()
	if !ok || spec == nil || len(spec.JobAnalyses) == 0 {
		x.finish(jobID, ReasonRunFailed)
		return
	}
	ja := spec.JobAnalyses[0]
	plans, err := x.planRuns(jobID, spec)
	if err != nil {
		log.Warn("emulator executor: plan", "err", err)
		x.finish(jobID, ReasonRunFailed)
		return
	}
	runs := make([]execRun, len(plans))
	for i, p := range plans {
		runs[i] = execRun{ID: p.id, Variables: p.vars}
	}
	if err := x.update(jobID, func(r *execRecord) { r.Runs = runs }); err != nil {
		log.Warn("emulator executor", "err", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if ja.Hardware.Walltime > 0 {
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeoutCause(ctx, time.Duration(ja.Hardware.Walltime)*x.walltimeUnit, errWalltime)
		defer c2()
	}
	go func() {
		select {
		case <-ex.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()

	slots := max(1, ja.Hardware.Slots)
	sem := make(chan struct{}, slots)
	var wg sync.WaitGroup
	var mu sync.Mutex // guards failed
	failed := false
	for _, p := range plans {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		rctx, done := ex.runContext(ctx, p.id)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer done()
			code := x.runOne(rctx, jobID, ja, p)
			if code != 0 {
				mu.Lock()
				failed = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	reason := ReasonSucceeded
	select {
	case <-ex.stopped:
		reason = ex.reason
	default:
		switch {
		case errors.Is(context.Cause(ctx), errWalltime):
			reason = ReasonWalltime
		case failed:
			reason = ReasonRunFailed
		}
	}
	x.finish(jobID, reason)
}

var errWalltime = errors.New("walltime exceeded")

// planRuns makes one run per row of the parameter file, or a single run.
func (x *executor) planRuns(jobID string, spec *jobSpecJSON) ([]runPlan, error) {
	rows := [][]runVariable{nil}
	if spec.ParamFile != nil && spec.ParamFile.ID != "" {
		b, err := x.e.readFile(spec.ParamFile.ID)
		if err != nil {
			return nil, fmt.Errorf("parameter file: %w", err)
		}
		if rows, err = parseParamCSV(b); err != nil {
			return nil, fmt.Errorf("parameter file: %w", err)
		}
	}
	plans := make([]runPlan, len(rows))
	for i, vars := range rows {
		id := strconv.Itoa(i + 1)
		plans[i] = runPlan{id: id, dir: filepath.Join(x.dir, jobID, "run"+id), vars: vars}
	}
	return plans, nil
}

// update changes a job's execRecord under the lock and journals it.
func (x *executor) update(jobID string, f func(*execRecord)) error {
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	j, ok := x.e.st.jobs[jobID]
	if !ok {
		return fmt.Errorf("job %s: %w", jobID, ErrNotFound)
	}
	nj := *j
	var r execRecord
	if j.Exec != nil {
		r = *j.Exec
		r.Runs = append([]execRun(nil), j.Exec.Runs...)
	}
	f(&r)
	nj.Exec = &r
	return x.e.commitLocked(record{Job: &nj})
}

func (x *executor) updateRun(jobID, runID string, f func(*execRun)) error {
	return x.update(jobID, func(r *execRecord) {
		for i := range r.Runs {
			if r.Runs[i].ID == runID {
				f(&r.Runs[i])
			}
		}
	})
}

// finish ends the job with reason now; runs still open are closed.
func (x *executor) finish(jobID, reason string) {
	now := x.e.now()
	err := x.update(jobID, func(r *execRecord) {
		r.Ended, r.Reason = now, reason
		for i := range r.Runs {
			if !r.Runs[i].Started.IsZero() && r.Runs[i].Completed.IsZero() {
				r.Runs[i].Completed = now
			}
		}
	})
	if err != nil {
		x.e.log.Warn("emulator executor: finish", "job", jobID, "err", err)
	}
}

// runOne runs one run in its work directory and publishes its outputs; it returns the run's exit code
// (the command's, else the post-processing command's).
func (x *executor) runOne(ctx context.Context, jobID string, ja jobAnalysisSpec, p runPlan) int {
	log := x.e.log.With("job", jobID, "run", p.id)
	_ = x.updateRun(jobID, p.id, func(r *execRun) { r.Started = x.e.now() })
	code, outVars := x.runIn(ctx, jobID, ja, p)
	if err := x.publish(jobID, p); err != nil {
		log.Warn("emulator executor: publish", "err", err)
	}
	_ = x.updateRun(jobID, p.id, func(r *execRun) {
		r.Completed, r.ExitCode = x.e.now(), code
		r.Variables = mergeVariables(r.Variables, outVars)
	})
	return code
}

func (x *executor) runIn(ctx context.Context, jobID string, ja jobAnalysisSpec, p runPlan) (int, []runVariable) {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return 1, nil
	}
	logf, err := os.OpenFile(filepath.Join(p.dir, processOutputLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 1, nil
	}
	defer logf.Close()
	lw := &logWriter{f: logf, now: x.e.now}
	if err := x.stageInputs(ja, p); err != nil {
		lw.line("Could not stage the inputs: " + err.Error())
		lw.line("Exited with code 1")
		return 1, nil
	}
	if err := snapshotInto(p.dir, x.snapshotPath(p)); err != nil {
		lw.line("Could not record the inputs: " + err.Error())
	}
	if ctx.Err() != nil {
		// Stopped (or out of walltime) while staging: the command is not launched at all.
		lw.line("Stopped before the command was launched")
		return 1, nil
	}
	env := runEnv(jobID, ja, p)
	code := x.command(ctx, p.dir, env, ja.Command, lw, nil)
	if errors.Is(context.Cause(ctx), errRunStopped) {
		lw.line("Run stopped by the user") // [I]: the sources show no such line
	}
	if ctx.Err() != nil || strings.TrimSpace(ja.PostProcessScriptCommand) == "" {
		return code, nil
	}
	var post []string
	pcode := x.command(ctx, p.dir, env, ja.PostProcessScriptCommand, lw, &post)
	if code == 0 {
		code = pcode
	}
	return code, outputVariables(post)
}

// stageInputs fetches the inputs in list order, unpacking archives when decompress, then the
// post-processing script and the filled templates.
func (x *executor) stageInputs(ja jobAnalysisSpec, p runPlan) error {
	for _, in := range ja.InputFiles {
		dst, err := x.fetch(in.ID, p.dir)
		if err != nil {
			return err
		}
		if in.decompress() && isArchive(dst) {
			if err := unpack(dst, p.dir); err != nil {
				return fmt.Errorf("unpack %s: %w", filepath.Base(dst), err)
			}
			if err := os.Remove(dst); err != nil {
				return err
			}
		}
	}
	if ja.PostProcessScript != nil && ja.PostProcessScript.ID != "" {
		if _, err := x.fetch(ja.PostProcessScript.ID, p.dir); err != nil {
			return err
		}
	}
	for _, t := range ja.TemplateTasks {
		b, err := x.e.readFile(t.TemplateFile.ID)
		if err != nil {
			return fmt.Errorf("template: %w", err)
		}
		dst, err := safeJoin(p.dir, t.ProcessedFilename)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(dst, []byte(fillTemplate(string(b), p.vars)), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// fetch writes a library file into dir under its name; a file starting with "#!" is made executable,
// as a script attached to a job is.
func (x *executor) fetch(id, dir string) (string, error) {
	x.e.mu.RLock()
	f, ok := x.e.st.files[id]
	var name string
	if ok {
		name = f.Name
	}
	x.e.mu.RUnlock()
	if !ok {
		return "", fmt.Errorf("input file %s: %w", id, ErrNotFound)
	}
	dst, err := safeJoin(dir, name)
	if err != nil {
		return "", err
	}
	r, _, err := x.e.Plaintext(id)
	if err != nil {
		return "", err
	}
	defer r.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return "", err
	}
	br := bufio.NewReader(r)
	head, _ := br.Peek(2)
	if _, err := io.Copy(out, br); err != nil {
		out.Close()
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	if string(head) == "#!" {
		if err := os.Chmod(dst, 0o700); err != nil {
			return "", err
		}
	}
	return dst, nil
}

// runEnv is the environment of a run's commands: the emulator's own minus anything RESCALE_* (its API key
// must not leak into a job), then what a cluster sets, the job's envVars and the run's variables [I].
func runEnv(jobID string, ja jobAnalysisSpec, p runPlan) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "RESCALE_") {
			env = append(env, kv)
		}
	}
	cores := max(1, ja.Hardware.CoresPerSlot)
	env = append(env,
		"RESCALE_CORES_PER_SLOT="+strconv.Itoa(cores),
		"RESCALE_NODES_PER_SLOT=1",
		"RESCALE_CORES_PER_NODE="+strconv.Itoa(cores),
		"RESCALE_CORE_TYPE="+string(ja.Hardware.CoreType),
		"RESCALE_SLOTS="+strconv.Itoa(max(1, ja.Hardware.Slots)),
		"RESCALE_JOB_ID="+jobID,
		"RESCALE_RUN_ID="+p.id,
		"RESCALE_WALLTIME="+strconv.Itoa(ja.Hardware.Walltime),
	)
	keys := make([]string, 0, len(ja.EnvVars))
	for k := range ja.EnvVars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+ja.EnvVars[k])
	}
	for _, v := range p.vars {
		env = append(env, v.Name+"="+v.DisplayValue)
	}
	return env
}

// command runs one command line under bash in dir, its output time-stamped into the log, and returns
// its exit code. ctx ending (stop, walltime) kills its process group. lines, when set, collects the
// output lines (the post-processing step's, for output variables).
func (x *executor) command(ctx context.Context, dir string, env []string, command string, lw *logWriter, lines *[]string) int {
	first, _, _ := strings.Cut(strings.TrimSpace(command), "\n")
	lw.line(fmt.Sprintf("Launching %s, Working dir: %s.  Process output follows:", first, dir))
	pr, pw, err := os.Pipe()
	if err != nil {
		lw.line(err.Error())
		lw.line("Exited with code " + strconv.Itoa(exitNotStarted))
		return exitNotStarted
	}
	cmd := exec.Command("bash", "-c", command)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		lw.line(err.Error())
		lw.line("Exited with code " + strconv.Itoa(exitNotStarted))
		return exitNotStarted
	}
	read := make(chan struct{})
	go func() {
		defer close(read)
		br := bufio.NewReader(pr)
		for {
			s, err := br.ReadString('\n')
			if s != "" {
				s = strings.TrimRight(s, "\r\n")
				lw.line(s)
				if lines != nil {
					*lines = append(*lines, s)
				}
			}
			if err != nil {
				return
			}
		}
	}()
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	pgid := cmd.Process.Pid
	select {
	case <-waited:
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		select {
		case <-waited:
			t.Stop()
		case <-t.C:
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-waited
		}
	}
	// What the command left running in the background dies with it, as on a cluster; that also closes
	// the last writers of the pipe.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-read:
	case <-time.After(stopGrace):
		// A process that left the group (setsid, a daemon) still holds the pipe: the run does not wait
		// for it. Closing our end ends the reader.
		lw.line("A process started by the command left its process group and still runs; its output is not recorded")
	}
	pr.Close()
	<-read
	code := cmd.ProcessState.ExitCode()
	if code < 0 {
		code = 128 + int(syscall.SIGKILL)
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	}
	lw.line("Exited with code " + strconv.Itoa(code))
	return code
}

// logWriter writes process_output.log lines as Rescale does: "[time]: text", one write per line so a
// tail never sees half a line.
type logWriter struct {
	mu  sync.Mutex // serialises lines
	f   *os.File
	now func() time.Time
}

// logTimeFormat is the time stamp of process_output.log lines [C].
const logTimeFormat = "2006-01-02T15:04:05Z"

func (w *logWriter) line(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.f.WriteString("[" + w.now().UTC().Format(logTimeFormat) + "]: " + s + "\n")
}

// fileStamp is what a file looked like before the commands ran.
type fileStamp struct {
	size  int64
	mtime time.Time
}

func (x *executor) snapshotPath(p runPlan) string { return p.dir + ".inputs" }

// snapshotInto records every file of dir (size and mtime) in memory-free form: a listing file beside the
// work directory, so publish can tell created and changed files from untouched inputs.
func snapshotInto(dir, listing string) error {
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fmt.Fprintf(&b, "%d %d %s\n", fi.Size(), fi.ModTime().UnixNano(), filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return err
	}
	return os.WriteFile(listing, []byte(b.String()), 0o600)
}

func readSnapshot(listing string) map[string]fileStamp {
	out := map[string]fileStamp{}
	b, err := os.ReadFile(listing)
	if err != nil {
		return out
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 {
			continue
		}
		size, _ := strconv.ParseInt(f[0], 10, 64)
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		out[f[2]] = fileStamp{size, time.Unix(0, ns)}
	}
	return out
}

// publish stores the files the run created or changed (and always its log) as the run's outputs.
func (x *executor) publish(jobID string, p runPlan) error {
	before := readSnapshot(x.snapshotPath(p))
	var recs []record
	x.e.mu.RLock()
	base := x.e.pathBaseLocked()
	x.e.mu.RUnlock()
	err := filepath.WalkDir(p.dir, func(fp string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p.dir, fp)
		rel = filepath.ToSlash(rel)
		if st, ok := before[rel]; ok && st.size == fi.Size() && st.mtime.Equal(fi.ModTime()) && rel != processOutputLog {
			return nil
		}
		in, err := os.Open(fp)
		if err != nil {
			return err
		}
		defer in.Close()
		f, o, err := x.e.stored(runObjectKey(base, jobID, p.id, rel), in, -1)
		if err != nil {
			return err
		}
		f.Name, f.RelativePath, f.JobID, f.RunID, f.TypeID = path.Base(rel), rel, jobID, p.id, TypeOutput
		recs = append(recs, record{Object: o}, record{File: f})
		return nil
	})
	if err != nil {
		return err
	}
	x.e.mu.Lock()
	defer x.e.mu.Unlock()
	for _, r := range recs {
		if r.File != nil {
			r.File.ID = x.e.newIDLocked(6)
		}
	}
	return x.e.commitLocked(recs...)
}

func runObjectKey(pathBase, jobID, runID, relPath string) string {
	return pathBase + "/output/job_" + jobID + "/run" + runID + "/" + relPath
}

// readFile reads a whole stored file (parameter tables and templates: small).
func (e *Emulator) readFile(id string) ([]byte, error) {
	r, _, err := e.Plaintext(id)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(io.LimitReader(r, 64<<20))
}

// safeJoin joins a relative path from a job body or an archive under dir, refusing any that escapes it.
func safeJoin(dir, rel string) (string, error) {
	clean := filepath.Clean("/" + filepath.FromSlash(rel))
	if clean == "/" || strings.Contains(rel, "\x00") {
		return "", fmt.Errorf("bad path %q", rel)
	}
	p := filepath.Join(dir, clean)
	if !strings.HasPrefix(p, filepath.Clean(dir)+string(filepath.Separator)) {
		return "", fmt.Errorf("path %q leaves the work directory", rel)
	}
	return p, nil
}

// abandonExecutionsLocked ends jobs a previous emulator process was executing: their commands died
// with it. e.mu must be held.
func (e *Emulator) abandonExecutionsLocked() error {
	now := e.now()
	for _, j := range e.st.jobs {
		if !j.Execute || j.Deleted || (j.Exec != nil && !j.Exec.Ended.IsZero()) {
			continue
		}
		nj := *j
		r := execRecord{Ended: now, Reason: ReasonEmulatorRestarted}
		if j.Exec != nil {
			r.Runs = j.Exec.Runs
		}
		nj.Exec = &r
		if err := e.commitLocked(record{Job: &nj}); err != nil {
			return err
		}
	}
	return nil
}
