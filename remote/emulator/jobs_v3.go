package emulator

import (
	"net/http"
	"slices"
	"strings"
)

// Job endpoints beyond the simulated v2 list: v3 jobs as Rescale's current Go client calls them, core
// types and analyses, the user's folders and the v3 file list.

const (
	EndpointV3Jobs      = "v3.jobs.list"
	EndpointV3JobCreate = "v3.jobs.create"
	EndpointV3Job       = "v3.jobs.get"
	EndpointV3JobDelete = "v3.jobs.delete"
	EndpointV3Statuses  = "v3.jobs.statuses"
	EndpointV3JobStop   = "v3.jobs.stop"
	EndpointV3Files     = "v3.files.list"
	EndpointFolders     = "v3.users.me.folders"
	EndpointFolder      = "v3.folders.contents"
	EndpointCoreTypes   = "coretypes.list"
	EndpointAnalyses    = "analyses.list"
)

// The emulated account's folder ids, company and workspace [I].
const (
	myJobsFolder      = "fJobs1"
	myLibraryFolder   = "fLib01"
	emulatedCompany   = "emulated-co"
	emulatedWorkspace = "wsEmu1"
)

func init() {
	// All v3 calls count in the user scope [C]; core types and analyses are v2 job queries [I].
	for _, ep := range []string{EndpointV3Jobs, EndpointV3JobCreate, EndpointV3Job, EndpointV3JobDelete,
		EndpointV3Statuses, EndpointV3JobStop, EndpointV3Files, EndpointFolders, EndpointFolder} {
		endpointScope[ep] = ScopeUser
	}
	endpointScope[EndpointCoreTypes] = ScopeJobsUsage
	endpointScope[EndpointAnalyses] = ScopeJobsUsage
}

// jobAPIRoute routes the endpoints of this file; ok is false for any other request.
func (e *Emulator) jobAPIRoute(r *http.Request, seg []string) (route, bool) {
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	api := func(name string, h http.HandlerFunc) (route, bool) { return route{name, kindAPI, h}, true }
	n := len(seg)
	switch {
	case n == 2 && seg[0] == "v2" && seg[1] == "coretypes" && get:
		return api(EndpointCoreTypes, e.serveCoreTypes)
	case n == 2 && seg[0] == "v2" && seg[1] == "analyses" && get:
		return api(EndpointAnalyses, e.serveAnalyses)
	case n == 2 && seg[0] == "v3" && seg[1] == "jobs" && get:
		return api(EndpointV3Jobs, e.serveJobs)
	case n == 2 && seg[0] == "v3" && seg[1] == "jobs" && post:
		return api(EndpointV3JobCreate, e.serveJobCreate)
	case n >= 3 && seg[0] == "v3" && seg[1] == "jobs":
		id := seg[2]
		switch {
		case n == 3 && get:
			return api(EndpointV3Job, func(w http.ResponseWriter, r *http.Request) { e.serveJobV3(w, r, id) })
		case n == 3 && r.Method == http.MethodDelete:
			return api(EndpointV3JobDelete, func(w http.ResponseWriter, r *http.Request) { e.serveJobDelete(w, r, id) })
		case n == 4 && seg[3] == "statuses" && get:
			return api(EndpointV3Statuses, func(w http.ResponseWriter, r *http.Request) { e.serveStatuses(w, r, id) })
		case n == 4 && seg[3] == "stop" && post:
			return api(EndpointV3JobStop, func(w http.ResponseWriter, r *http.Request) { e.serveJobStop(w, r, id) })
		}
	case n == 4 && seg[0] == "v3" && seg[1] == "users" && seg[2] == "me" && seg[3] == "folders" && get:
		return api(EndpointFolders, func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, map[string]string{"myJobs": myJobsFolder, "myLibrary": myLibraryFolder})
		})
	case n == 2 && seg[0] == "v3" && seg[1] == "files" && get:
		return api(EndpointV3Files, e.serveLibraryV3)
	case n == 4 && seg[0] == "v3" && seg[1] == "folders" && seg[3] == "contents" && get:
		id := seg[2]
		return api(EndpointFolder, func(w http.ResponseWriter, r *http.Request) {
			if id != myLibraryFolder {
				writeDetail(w, http.StatusNotFound, "Not found.")
				return
			}
			e.serveLibraryV3(w, r)
		})
	}
	return route{}, false
}

func (e *Emulator) serveJobV3(w http.ResponseWriter, r *http.Request, id string) {
	now := e.now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	j, ok := e.jobLocked(w, id)
	if !ok {
		return
	}
	d := e.renderJobDetailLocked(j, now)
	d.JobStatus = &contentField{j.view(now).latest.Status}
	writeJSON(w, http.StatusOK, d)
}

// serveLibraryV3 is the library as GET /api/v3/files/ lists it; ordering=-dateUploaded is newest first.
func (e *Emulator) serveLibraryV3(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	e.mu.RLock()
	defer e.mu.RUnlock()
	var files []*fileRecord
	for _, id := range e.st.library {
		if f := e.st.files[id]; (deletedFilesListed || !f.Deleted) && searchMatches(f, q.Get("search")) {
			files = append(files, f)
		}
	}
	switch o := q.Get("ordering"); strings.TrimPrefix(o, "-") {
	case "dateUploaded":
		slices.SortStableFunc(files, func(a, b *fileRecord) int {
			c := a.Uploaded.Compare(b.Uploaded)
			if strings.HasPrefix(o, "-") {
				return -c
			}
			return c
		})
	case "name":
		slices.SortStableFunc(files, func(a, b *fileRecord) int {
			c := strings.Compare(a.Name, b.Name)
			if strings.HasPrefix(o, "-") {
				return -c
			}
			return c
		})
	}
	paginate(w, r, files, func(f *fileRecord) any { return e.renderFileLocked(r, f, f.Uploaded) })
}

// execRunsLocked renders the runs of an executed job: the ones started so far.
func (e *Emulator) execRunsLocked(j *jobRecord) []runJSON {
	if j.Exec == nil {
		return nil
	}
	var out []runJSON
	for i, run := range j.Exec.Runs {
		if run.Started.IsZero() {
			continue
		}
		rj := runJSON{ID: run.ID, DisplayOrder: i, DateStarted: fmtTimePtr(run.Started),
			DateCompleted: fmtTimePtr(run.Completed), Variables: run.Variables}
		if rj.Variables == nil {
			rj.Variables = []runVariable{}
		}
		if !run.Completed.IsZero() {
			for _, id := range e.st.jobFiles[j.ID] {
				if f := e.st.files[id]; !f.Deleted && f.RunID == run.ID {
					rj.OutputFileCount++
					rj.OutputFileSize += f.Size
				}
			}
		}
		out = append(out, rj)
	}
	return out
}

// execRunLocked is one run of an executed job.
func (e *Emulator) execRunLocked(j *jobRecord, runID string) (execRun, bool) {
	if j.Exec == nil {
		return execRun{}, false
	}
	for _, r := range j.Exec.Runs {
		if r.ID == runID {
			return r, true
		}
	}
	return execRun{}, false
}
