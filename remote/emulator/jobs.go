package emulator

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
)

// defaultJobOrdering is the order of GET /api/v2/jobs/ without ordering= [I]: newest first.
const defaultJobOrdering = "-dateInserted"

// clusterStatus is the clusterStatusDisplay a job shows in each status [I].
func clusterStatus(v jobView) string {
	switch {
	case v.completed:
		return "Stopped"
	case v.latest.Status == StatusStopping:
		return "Stopping"
	case !v.startedAt.IsZero():
		return "Started"
	}
	return "Not started"
}

// statusParam normalises a status for job_status=: "Waiting for Queue" -> "WAITING_FOR_QUEUE".
func statusParam(s string) string { return strings.ToUpper(strings.ReplaceAll(s, " ", "_")) }

func (e *Emulator) jobStorageLocked(j *jobRecord, v jobView) int64 {
	if !v.completed {
		return 0
	}
	var n int64
	for _, id := range e.st.jobFiles[j.ID] {
		if f := e.st.files[id]; !f.Deleted {
			n += f.Size
		}
	}
	return n
}

func (e *Emulator) serveJobs(w http.ResponseWriter, r *http.Request) {
	now := e.now()
	q := r.URL.Query()
	e.mu.RLock()
	defer e.mu.RUnlock()
	type item struct {
		j *jobRecord
		v jobView
	}
	var items []item
	for _, j := range e.st.jobs {
		if j.Deleted {
			continue
		}
		v := j.view(now)
		switch q.Get("state") {
		case "completed":
			if !v.completed {
				continue
			}
		case "not_completed":
			if v.completed {
				continue
			}
		}
		if s := q.Get("job_status"); s != "" && statusParam(s) != statusParam(v.latest.Status) {
			continue
		}
		items = append(items, item{j, v})
	}
	ordering := q.Get("ordering")
	if ordering == "" {
		ordering = defaultJobOrdering
	}
	slices.SortFunc(items, func(a, b item) int {
		c := a.j.Created.Compare(b.j.Created)
		if c == 0 {
			c = strings.Compare(a.j.ID, b.j.ID)
		}
		if strings.HasPrefix(ordering, "-") {
			return -c
		}
		return c
	})
	paginate(w, r, items, func(it item) any {
		return jobListItemJSON{
			ID: it.j.ID, Name: it.j.Name, DateInserted: fmtTime(it.j.Created), Owner: it.j.Owner,
			AnalysisNames: []string{it.j.Analysis}, JobStatus: contentField{it.v.latest.Status},
			ClusterStatusDisplay: contentField{clusterStatus(it.v)}, Storage: e.jobStorageLocked(it.j, it.v),
			SharedWith: nonNil(it.j.SharedWith), IsVisible: true,
		}
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// jobLocked returns a live (not deleted) job, or answers 404.
func (e *Emulator) jobLocked(w http.ResponseWriter, id string) (*jobRecord, bool) {
	j, ok := e.st.jobs[id]
	if !ok || j.Deleted {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return nil, false
	}
	return j, true
}

func (e *Emulator) renderJobDetailLocked(j *jobRecord, now time.Time) jobDetailJSON {
	d := jobDetailJSON{
		ID: j.ID, Name: j.Name, Description: "", DateInserted: fmtTime(j.Created), Owner: j.Owner,
		JobAnalyses: []jobAnalysisJSON{{
			Analysis:   analysisJSON{Code: strings.ToLower(j.Analysis), Name: j.Analysis, Version: "1.0"},
			Command:    "./run.sh",
			Hardware:   hardwareJSON{CoreType: "emerald", CoresPerSlot: 4, Slots: 1},
			InputFiles: []any{},
		}},
		SharedWith: nonNil(j.SharedWith), Storage: e.jobStorageLocked(j, j.view(now)), ArchiveFilters: []any{},
		JobVariables: []any{},
	}
	if s := j.Spec; s != nil {
		d.Description, d.IsLowPriority, d.ParamFile = s.Description, s.IsLowPriority, s.ParamFile
		d.JobAnalyses = nil
		for _, ja := range s.JobAnalyses {
			in := make([]any, 0, len(ja.InputFiles))
			for _, f := range ja.InputFiles {
				in = append(in, map[string]any{"id": f.ID, "decompress": f.decompress()})
			}
			name := ja.Analysis.Code
			if a, ok := findAnalysis(ja.Analysis.Code); ok {
				name = a.Name
			}
			d.JobAnalyses = append(d.JobAnalyses, jobAnalysisJSON{
				Analysis: analysisJSON{Code: ja.Analysis.Code, Name: name, Version: ja.Analysis.Version},
				Command:  ja.Command,
				Hardware: hardwareJSON{CoreType: string(ja.Hardware.CoreType), CoresPerSlot: ja.Hardware.CoresPerSlot,
					Slots: ja.Hardware.Slots, Walltime: ja.Hardware.Walltime},
				InputFiles: in, PostProcessScript: ja.PostProcessScript,
				PostProcessScriptCommand: ja.PostProcessScriptCommand, EnvVars: ja.EnvVars,
				UseRescaleLicense: ja.UseRescaleLicense, TemplateTasks: ja.TemplateTasks,
			})
		}
	}
	return d
}

func (e *Emulator) serveJob(w http.ResponseWriter, r *http.Request, id string) {
	now := e.now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, e.renderJobDetailLocked(j, now))
}

func (e *Emulator) serveStatuses(w http.ResponseWriter, r *http.Request, id string) {
	now := e.now()
	e.mu.RLock()
	j, ok := e.jobLocked(w, id)
	var hist []statusEvent
	if ok {
		hist = j.view(now).history
	}
	e.mu.RUnlock()
	if !ok {
		return
	}
	slices.Reverse(hist) // newest first [C]
	paginate(w, r, hist, func(s statusEvent) any {
		out := statusJSON{Status: s.Status, StatusDate: fmtTime(s.At)}
		if s.Reason != "" {
			out.StatusReason = &s.Reason
		}
		return out
	})
}

func (e *Emulator) runLocked(j *jobRecord, v jobView) (runJSON, bool) {
	if v.startedAt.IsZero() {
		return runJSON{}, false
	}
	run := runJSON{ID: "1", DateStarted: fmtTimePtr(v.startedAt)}
	if v.completed {
		run.DateCompleted = fmtTimePtr(v.completedAt)
		for _, id := range e.st.jobFiles[j.ID] {
			if f := e.st.files[id]; !f.Deleted {
				run.OutputFileCount++
				run.OutputFileSize += f.Size
			}
		}
	}
	return run, true
}

func (e *Emulator) serveRuns(w http.ResponseWriter, r *http.Request, id string) {
	now := e.now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		return
	}
	var runs []runJSON
	if j.Execute {
		runs = e.execRunsLocked(j)
	} else if run, ok := e.runLocked(j, j.view(now)); ok {
		runs = append(runs, run)
	}
	paginate(w, r, runs, func(r runJSON) any { return r })
}

func (e *Emulator) serveRun(w http.ResponseWriter, r *http.Request, id, runID string) {
	now := e.now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		return
	}
	if j.Execute {
		for _, run := range e.execRunsLocked(j) {
			if run.ID == runID {
				writeJSON(w, http.StatusOK, run)
				return
			}
		}
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	run, ok := e.runLocked(j, j.view(now))
	if !ok || runID != "1" {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	writeJSON(w, http.StatusOK, run)
}

func (e *Emulator) serveJobCreate(w http.ResponseWriter, r *http.Request) {
	var in jobSpecJSON
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil {
		writeDetail(w, http.StatusBadRequest, "JSON parse error - "+err.Error())
		return
	}
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if errs := e.validateLocked(&in); len(errs) > 0 {
		writeJSON(w, http.StatusBadRequest, errs)
		return
	}
	analysis := in.JobAnalyses[0].Analysis.Code
	if a, ok := findAnalysis(analysis); ok {
		analysis = a.Name
	}
	j := &jobRecord{ID: e.newIDLocked(5), Name: in.Name, Owner: userEmail, Analysis: analysis, Created: now,
		Lifecycle: e.lifecycle, Spec: &in}
	if !e.commitOrFailLocked(w, record{Job: j}) {
		return
	}
	writeJSON(w, http.StatusCreated, e.renderJobDetailLocked(j, now))
}

func (e *Emulator) serveJobSubmit(w http.ResponseWriter, r *http.Request, id string) {
	discardBody(r)
	now := e.now()
	e.mu.Lock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		e.mu.Unlock()
		return
	}
	if !j.Submitted.IsZero() || !j.StopAt.IsZero() {
		e.mu.Unlock()
		writeDetail(w, http.StatusBadRequest, "Job has already been submitted.")
		return
	}
	nj := *j
	nj.Submitted = now
	nj.Execute = e.exec != nil
	name := j.Name
	err := e.commitLocked(record{Job: &nj})
	e.mu.Unlock()
	if err == nil && nj.Execute {
		e.exec.start(id, nj.Submitted.Add(nj.Lifecycle.beforeExecuting()))
	} else if err == nil {
		// The run's outputs: stored now, listed once the job completes, live while it executes.
		err = e.addFiles(id, defaultOutputs(id, name))
	}
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (e *Emulator) serveJobStop(w http.ResponseWriter, r *http.Request, id string) {
	discardBody(r)
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		return
	}
	if !j.view(now).completed && j.StopAt.IsZero() {
		nj := *j
		nj.StopAt = now
		if !e.commitOrFailLocked(w, record{Job: &nj}) {
			return
		}
		if nj.Execute {
			e.exec.stop(id)
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

// serveRunStop stops one run of a job (a DOE row) [C]; the other runs go on. A run already over, like
// a completed job's stop, is accepted and changes nothing. A simulated job has its one run: stopping
// it stops the job [I]. Runs of a job not yet planned (still queued) are not found [I].
func (e *Emulator) serveRunStop(w http.ResponseWriter, r *http.Request, id, runID string) {
	discardBody(r)
	now := e.now()
	e.mu.RLock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		e.mu.RUnlock()
		return
	}
	execute := j.Execute
	var found, over bool
	if execute && j.Exec != nil {
		for _, run := range j.Exec.Runs {
			if run.ID == runID {
				found, over = true, !run.Completed.IsZero() || !j.Exec.Ended.IsZero()
			}
		}
	}
	simulated := !execute && runID == "1" && !j.Submitted.IsZero()
	completed := j.view(now).completed
	e.mu.RUnlock()
	switch {
	case simulated:
		e.serveJobStop(w, r, id)
		return
	case !found:
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	case !over && !completed:
		e.exec.stopRun(id, runID)
	}
	w.WriteHeader(http.StatusAccepted)
}

func (e *Emulator) serveJobDelete(w http.ResponseWriter, r *http.Request, id string) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		return
	}
	if !j.Submitted.IsZero() && !j.view(now).completed {
		// Delete only once the cluster is stopped [C].
		writeDetail(w, http.StatusBadRequest, "A job cannot be deleted while it is running; stop it first.")
		return
	}
	nj := *j
	nj.Deleted = true
	if !e.commitOrFailLocked(w, record{Job: &nj}) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
