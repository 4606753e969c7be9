package emulator

import (
	"net"
	"net/http"
	"strings"
)

// Endpoint names: the keys of Counters and of fault targeting (FailNext, Faults.Endpoints).
const (
	EndpointJobs              = "jobs.list"
	EndpointJobCreate         = "jobs.create"
	EndpointJob               = "jobs.get"
	EndpointJobDelete         = "jobs.delete"
	EndpointJobSubmit         = "jobs.submit"
	EndpointJobStop           = "jobs.stop"
	EndpointRunStop           = "runs.stop"
	EndpointStatuses          = "jobs.statuses"
	EndpointRuns              = "jobs.runs"
	EndpointRun               = "runs.get"
	EndpointJobFiles          = "jobs.files"
	EndpointRunFiles          = "runs.files"
	EndpointDirectoryContents = "runs.directory-contents"
	EndpointTail              = "runs.tail"
	EndpointFiles             = "files.list"
	EndpointFile              = "files.get"
	EndpointFileDelete        = "files.delete"
	EndpointLines             = "files.lines"
	EndpointContents          = "files.contents"
	EndpointUpload            = "files.upload"
	EndpointRegister          = "files.register"
	EndpointMe                = "users.me"
	EndpointCredentials       = "credentials"
	EndpointUnknown           = "api.unknown"

	EndpointS3Get             = "s3.get"
	EndpointS3Head            = "s3.head"
	EndpointS3Put             = "s3.put"
	EndpointS3Delete          = "s3.delete"
	EndpointS3List            = "s3.list"
	EndpointS3CreateMultipart = "s3.multipart.create"
	EndpointS3UploadPart      = "s3.multipart.part"
	EndpointS3ListParts       = "s3.multipart.list-parts"
	EndpointS3Complete        = "s3.multipart.complete"
	EndpointS3Abort           = "s3.multipart.abort"
	EndpointS3ListUploads     = "s3.multipart.list-uploads"
	EndpointS3Other           = "s3.other"

	EndpointAdmin = "emulator.admin"
	EndpointStats = "emulator.stats"
)

// Throttle scopes (rescale-api.md, "Throttling").
const (
	ScopeUser             = "user"
	ScopeJobSubmission    = "job-submission"
	ScopeJobsUsage        = "jobs-usage"
	ScopeFileAccess       = "file-access"
	ScopeCredentialAccess = "credential-access"
)

// endpointScope says which throttle scope counts an endpoint [I]: Rescale's client names the scopes and
// their rates, not which endpoint each one covers. v3 is "user" except credentials; job creation and
// submission are "job-submission"; other v2 job queries "jobs-usage"; v2 files "file-access".
var endpointScope = map[string]string{
	EndpointJobs: ScopeJobsUsage, EndpointJob: ScopeJobsUsage, EndpointJobDelete: ScopeJobsUsage,
	EndpointJobStop: ScopeJobsUsage, EndpointRunStop: ScopeJobsUsage, EndpointStatuses: ScopeJobsUsage, EndpointRuns: ScopeJobsUsage,
	EndpointRun: ScopeJobsUsage, EndpointJobFiles: ScopeJobsUsage, EndpointRunFiles: ScopeJobsUsage,
	EndpointDirectoryContents: ScopeJobsUsage, EndpointTail: ScopeJobsUsage,
	EndpointJobCreate: ScopeJobSubmission, EndpointJobSubmit: ScopeJobSubmission,
	EndpointFiles: ScopeFileAccess, EndpointFile: ScopeFileAccess, EndpointFileDelete: ScopeFileAccess,
	EndpointLines: ScopeFileAccess, EndpointContents: ScopeFileAccess, EndpointUpload: ScopeFileAccess,
	EndpointRegister: ScopeUser, EndpointMe: ScopeUser, EndpointCredentials: ScopeCredentialAccess,
}

type routeKind int

const (
	kindAPI routeKind = iota
	kindS3
	kindAdmin
)

type route struct {
	endpoint string
	kind     routeKind
	handle   http.HandlerFunc
}

// ServeHTTP serves the API under /api/, the admin and stats endpoints under /_emulator/ (loopback only),
// and S3 (path style) on every other path.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := e.route(r)
	e.counters.arrive(rt.endpoint)
	if rt.kind != kindAdmin {
		// Deferred before the status below, so it runs after: a test that waits for Serving to drop
		// finds the request counted whole, its status included.
		e.serving.Add(1)
		defer e.serving.Add(-1)
	}
	rw := &respWriter{w: w, status: http.StatusOK, counters: &e.counters, endpoint: rt.endpoint}
	r.Body = &countingBody{r: r.Body, c: &e.counters, endpoint: rt.endpoint}
	defer func() {
		if rw.wroteHeader {
			return // counted when written
		}
		// Nothing written: net/http answers 200, unless the client is gone (a hold saw it leave, or
		// its context is done) and nothing is answered.
		status := rw.status
		if rw.clientGone || r.Context().Err() != nil {
			status = StatusClientClosedRequest
		}
		e.counters.status(rt.endpoint, status)
	}()

	if rt.kind == kindAdmin {
		if !isLoopback(r) {
			writeDetail(rw, http.StatusForbidden, "The emulator's admin endpoints answer loopback clients only.")
			return
		}
		if !e.authorized(rw, r) {
			return
		}
		rt.handle(rw, r)
		return
	}
	if !e.injectFaults(rw, r, rt) {
		return
	}
	if rt.kind == kindAPI {
		if !e.authorized(rw, r) {
			return
		}
		if scope := endpointScope[rt.endpoint]; scope != "" && !e.throttle.allow(rw, scope, e.now()) {
			return
		}
	}
	rt.handle(rw, r)
}

// Serving is the number of API and S3 requests being handled now, from their arrival (held, delayed or
// paced included) until their handler returns: tests wait on it for the emulator to let go of a
// request instead of sleeping.
func (e *Emulator) Serving() int64 { return e.serving.Load() }

func isLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// route names the endpoint of a request and picks its handler.
func (e *Emulator) route(r *http.Request) route {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/api/"):
		return e.apiRoute(r, strings.TrimPrefix(p, "/api/"))
	case strings.HasPrefix(p, "/_emulator/") || p == "/_emulator":
		return e.adminRoute(r, strings.Trim(strings.TrimPrefix(p, "/_emulator"), "/"))
	default:
		return route{endpoint: s3Endpoint(r), kind: kindS3, handle: e.serveS3}
	}
}

func (e *Emulator) apiRoute(r *http.Request, rest string) route {
	// tail/{path}: the path is everything after tail/, slashes included, never trimmed.
	if i := strings.Index(rest, "/tail/"); i >= 0 && strings.HasPrefix(rest, "v2/jobs/") {
		seg := strings.Split(rest[:i], "/") // v2 jobs ID runs RUN
		if len(seg) == 5 && seg[3] == "runs" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			job, run, path := seg[2], seg[4], rest[i+len("/tail/"):]
			return route{EndpointTail, kindAPI, func(w http.ResponseWriter, r *http.Request) { e.serveTail(w, r, job, run, path) }}
		}
	}
	seg := strings.Split(strings.Trim(rest, "/"), "/")
	if rt, ok := e.jobAPIRoute(r, seg); ok {
		return rt
	}
	get := r.Method == http.MethodGet || r.Method == http.MethodHead
	post := r.Method == http.MethodPost
	api := func(name string, h http.HandlerFunc) route { return route{name, kindAPI, h} }
	n := len(seg)
	switch {
	case n == 2 && seg[0] == "v2" && seg[1] == "jobs" && get:
		return api(EndpointJobs, e.serveJobs)
	case n == 2 && seg[0] == "v2" && seg[1] == "jobs" && post:
		return api(EndpointJobCreate, e.serveJobCreate)
	case n >= 3 && seg[0] == "v2" && seg[1] == "jobs":
		id := seg[2]
		switch {
		case n == 3 && get:
			return api(EndpointJob, func(w http.ResponseWriter, r *http.Request) { e.serveJob(w, r, id) })
		case n == 3 && r.Method == http.MethodDelete:
			return api(EndpointJobDelete, func(w http.ResponseWriter, r *http.Request) { e.serveJobDelete(w, r, id) })
		case n == 4 && seg[3] == "statuses" && get:
			return api(EndpointStatuses, func(w http.ResponseWriter, r *http.Request) { e.serveStatuses(w, r, id) })
		case n == 4 && seg[3] == "runs" && get:
			return api(EndpointRuns, func(w http.ResponseWriter, r *http.Request) { e.serveRuns(w, r, id) })
		case n == 4 && seg[3] == "files" && get:
			return api(EndpointJobFiles, func(w http.ResponseWriter, r *http.Request) { e.serveJobFiles(w, r, id, "") })
		case n == 4 && seg[3] == "submit" && post:
			return api(EndpointJobSubmit, func(w http.ResponseWriter, r *http.Request) { e.serveJobSubmit(w, r, id) })
		case n == 4 && seg[3] == "stop" && post:
			return api(EndpointJobStop, func(w http.ResponseWriter, r *http.Request) { e.serveJobStop(w, r, id) })
		case n == 5 && seg[3] == "runs" && get:
			run := seg[4]
			return api(EndpointRun, func(w http.ResponseWriter, r *http.Request) { e.serveRun(w, r, id, run) })
		case n == 6 && seg[3] == "runs" && seg[5] == "stop" && post:
			run := seg[4]
			return api(EndpointRunStop, func(w http.ResponseWriter, r *http.Request) { e.serveRunStop(w, r, id, run) })
		case n == 6 && seg[3] == "runs" && seg[5] == "files" && get:
			run := seg[4]
			return api(EndpointRunFiles, func(w http.ResponseWriter, r *http.Request) { e.serveJobFiles(w, r, id, run) })
		case n == 6 && seg[3] == "runs" && seg[5] == "directory-contents" && get:
			run := seg[4]
			return api(EndpointDirectoryContents, func(w http.ResponseWriter, r *http.Request) { e.serveDirectoryContents(w, r, id, run) })
		}
	case n == 2 && seg[0] == "v2" && seg[1] == "files" && get:
		return api(EndpointFiles, e.serveLibrary)
	case n == 3 && seg[0] == "v2" && seg[1] == "files" && seg[2] == "contents" && post:
		return api(EndpointUpload, e.serveUpload)
	case n >= 3 && (seg[0] == "v2" || seg[0] == "v3") && seg[1] == "files":
		id := seg[2]
		switch {
		case n == 3 && get:
			return api(EndpointFile, func(w http.ResponseWriter, r *http.Request) { e.serveFile(w, r, id) })
		case n == 3 && r.Method == http.MethodDelete:
			return api(EndpointFileDelete, func(w http.ResponseWriter, r *http.Request) { e.serveFileDelete(w, r, id) })
		case n == 4 && seg[3] == "contents" && get:
			return api(EndpointContents, func(w http.ResponseWriter, r *http.Request) { e.serveContents(w, r, id) })
		case n == 4 && seg[3] == "lines" && get:
			return api(EndpointLines, func(w http.ResponseWriter, r *http.Request) { e.serveLines(w, r, id) })
		}
	case n == 2 && seg[0] == "v3" && seg[1] == "files" && post:
		return api(EndpointRegister, e.serveRegister)
	case n == 3 && seg[0] == "v3" && seg[1] == "users" && seg[2] == "me" && get:
		return api(EndpointMe, e.serveMe)
	case n == 2 && seg[0] == "v3" && seg[1] == "credentials" && post:
		return api(EndpointCredentials, e.serveCredentials)
	}
	return api(EndpointUnknown, func(w http.ResponseWriter, r *http.Request) {
		writeDetail(w, http.StatusNotFound, "Not found.")
	})
}
