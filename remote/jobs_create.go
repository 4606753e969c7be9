package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// UserIncludedAnalysis is the analysis code of "bring your own software": the command runs as given.
const UserIncludedAnalysis = "user_included"

// JobSpec is the body of POST /api/v2/jobs/ (rescale-api.md, "Jobs: create, submit, DOE"). It is also
// what a job detail carries back.
type JobSpec struct {
	Name          string        `json:"name"`
	Description   string        `json:"description,omitempty"`
	IsLowPriority bool          `json:"isLowPriority"`
	JobAnalyses   []JobAnalysis `json:"jobanalyses"`
	ParamFile     *FileRef      `json:"paramFile"`
	JobVariables  []any         `json:"jobvariables"`
}

// JobAnalysis is one analysis of a job: the software, the hardware, the inputs and the commands.
type JobAnalysis struct {
	Analysis                 AnalysisRef       `json:"analysis"`
	Hardware                 Hardware          `json:"hardware"`
	InputFiles               []InputFile       `json:"inputFiles"`
	Command                  string            `json:"command"`
	PostProcessScript        *FileRef          `json:"postProcessScript,omitempty"`
	PostProcessScriptCommand string            `json:"postProcessScriptCommand,omitempty"`
	EnvVars                  map[string]string `json:"envVars,omitempty"`
	UseRescaleLicense        bool              `json:"useRescaleLicense"`
	TemplateTasks            []TemplateTask    `json:"templateTasks,omitempty"`
}

// AnalysisRef names the software; Version "" means the latest.
type AnalysisRef struct {
	Code    string `json:"code"`
	Version string `json:"version,omitempty"`
	Name    string `json:"name,omitempty"` // in answers only
}

// Hardware is what a job runs on. Walltime is in hours [C]: never seconds.
type Hardware struct {
	CoreType     CoreTypeCode `json:"coreType"`
	CoresPerSlot int          `json:"coresPerSlot"`
	Slots        int          `json:"slots,omitempty"`
	Walltime     int          `json:"walltime,omitempty"`
}

// CoreTypeCode is a core type's code. v2 sends and answers it as a string, v3 as {"code": ...}; both
// are read.
type CoreTypeCode string

func (c *CoreTypeCode) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*c = ""
		return nil
	}
	if len(b) > 0 && b[0] == '{' {
		var v struct {
			Code string `json:"code"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("coreType: %w", err)
		}
		*c = CoreTypeCode(v.Code)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("coreType: %w", err)
	}
	*c = CoreTypeCode(s)
	return nil
}

// InputFile is an input of a job. Decompress nil means the platform's default (true).
type InputFile struct {
	ID         string `json:"id"`
	Decompress *bool  `json:"decompress,omitempty"`
}

// FileRef names a file by id.
type FileRef struct {
	ID string `json:"id"`
}

// TemplateTask fills a template (placeholders ${x}) with a DOE run's variables into ProcessedFilename.
type TemplateTask struct {
	TemplateFile      FileRef `json:"templateFile"`
	ProcessedFilename string  `json:"processedFilename"`
}

// JobDetail is GET /api/v2/jobs/{id}/ (no jobStatus) or GET /api/v3/jobs/{id}/ (with it).
type JobDetail struct {
	JobSpec
	ID           string `json:"id"`
	DateInserted Time   `json:"dateInserted"`
	Owner        string `json:"owner"`
	JobStatus    Label  `json:"jobStatus"`
}

// UnmarshalJSON reads a job detail, and when its analyses are in a shape this client does not know,
// keeps the job's identity without them: a job that was created must never look like a failed create.
func (d *JobDetail) UnmarshalJSON(b []byte) error {
	type plain JobDetail
	var full plain
	if err := json.Unmarshal(b, &full); err == nil {
		*d = JobDetail(full)
		return nil
	}
	var id struct {
		ID           json.RawMessage `json:"id"`
		Name         string          `json:"name"`
		DateInserted Time            `json:"dateInserted"`
		Owner        string          `json:"owner"`
		JobStatus    Label           `json:"jobStatus"`
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return err
	}
	s, err := idString(id.ID)
	if err != nil {
		return err
	}
	*d = JobDetail{ID: s, DateInserted: id.DateInserted, Owner: id.Owner, JobStatus: id.JobStatus}
	d.Name = id.Name
	return nil
}

// CoreType is an item of GET /api/v2/coretypes/.
type CoreType struct {
	Code             string  `json:"code"`
	Name             string  `json:"name"`
	Cores            []int   `json:"cores"`
	Price            float64 `json:"price"` // per core hour, on demand
	LowPriorityPrice float64 `json:"lowPriorityPrice"`
	WalltimeRequired bool    `json:"walltimeRequired"`
	IsDeprecated     bool    `json:"isDeprecated"`
	DisplayOrder     int     `json:"displayOrder"`
}

// UnmarshalJSON reads a core type leniently: numbers may come as numbers or strings, and a field of an
// unexpected type is left zero rather than failing the whole list (the catalog only guides a submit).
func (c *CoreType) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	str := func(k string) string { s, _ := m[k].(string); return s }
	num := func(v any) float64 {
		switch t := v.(type) {
		case float64:
			return t
		case string:
			f, _ := strconv.ParseFloat(t, 64)
			return f
		}
		return 0
	}
	flag := func(k string) bool { v, _ := m[k].(bool); return v }
	*c = CoreType{Code: str("code"), Name: str("name"), Price: num(m["price"]), LowPriorityPrice: num(m["lowPriorityPrice"]),
		WalltimeRequired: flag("walltimeRequired"), IsDeprecated: flag("isDeprecated"), DisplayOrder: int(num(m["displayOrder"]))}
	if cores, ok := m["cores"].([]any); ok {
		for _, x := range cores {
			if n := int(num(x)); n > 0 {
				c.Cores = append(c.Cores, n)
			}
		}
	}
	return nil
}

// Analysis is an item of GET /api/v2/analyses/.
type Analysis struct {
	Code     string            `json:"code"`
	Name     string            `json:"name"`
	Versions []AnalysisVersion `json:"versions"`
}

// AnalysisVersion is one version of an analysis; VersionCode is what AnalysisRef.Version takes.
type AnalysisVersion struct {
	Version          string   `json:"version"`
	VersionCode      string   `json:"versionCode"`
	AllowedCoreTypes []string `json:"allowedCoreTypes"`
}

// Folders is GET /api/v3/users/me/folders/: the ids of the user's job and library folders.
type Folders struct {
	MyJobs    string `json:"myJobs"`
	MyLibrary string `json:"myLibrary"`
}

// JobRejectedError is a job body the platform refused (400): its field errors as they came, keyed by
// the field's path ("name", "jobanalyses.0.hardware.coreType", ...).
type JobRejectedError struct {
	Fields map[string][]string
	Err    *APIError
}

func (e *JobRejectedError) Error() string {
	if len(e.Fields) == 0 {
		return "job rejected: " + e.Err.Error()
	}
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+strings.Join(e.Fields[k], " "))
	}
	return "job rejected: " + strings.Join(parts, "; ")
}

func (e *JobRejectedError) Unwrap() error { return e.Err }

// jobRejected turns a 400 answer to a job body into a *JobRejectedError; other errors pass.
func jobRejected(err error) error {
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		return err
	}
	fields := map[string][]string{}
	var v any
	if json.Unmarshal(ae.body, &v) == nil {
		flattenFields("", v, fields)
	}
	return &JobRejectedError{Fields: fields, Err: ae}
}

func flattenFields(prefix string, v any, out map[string][]string) {
	key := func(k string) string {
		if prefix == "" {
			return k
		}
		return prefix + "." + k
	}
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			flattenFields(key(k), x, out)
		}
	case []any:
		for i, x := range t {
			if s, ok := x.(string); ok {
				out[prefix] = append(out[prefix], s)
			} else {
				flattenFields(key(fmt.Sprint(i)), x, out)
			}
		}
	case string:
		out[prefix] = append(out[prefix], t)
	case nil:
	default:
		out[prefix] = append(out[prefix], fmt.Sprint(t))
	}
}

// v3Body is spec as POST /api/v3/jobs/ takes it: coreType as {"code": ...}.
func (s JobSpec) v3Body() (any, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if jas, ok := m["jobanalyses"].([]any); ok {
		for _, ja := range jas {
			if hw, ok := ja.(map[string]any)["hardware"].(map[string]any); ok {
				hw["coreType"] = map[string]any{"code": hw["coreType"]}
			}
		}
	}
	return m, nil
}

// CreateJob creates a job (POST /api/v2/jobs/, 201); it does not start it (SubmitJob). A rejected body
// is a *JobRejectedError. A create is not retried on 5xx: it may have created the job.
func (c *Client) CreateJob(ctx context.Context, spec JobSpec) (JobDetail, error) {
	var j JobDetail
	err := c.postJSON(ctx, "/api/v2/jobs/", spec, &j)
	return j, jobRejected(err)
}

// CreateJobV3 creates a job through v3 (coreType sent as {"code": ...}; counts in the user scope).
func (c *Client) CreateJobV3(ctx context.Context, spec JobSpec) (JobDetail, error) {
	body, err := spec.v3Body()
	if err != nil {
		return JobDetail{}, err
	}
	var j JobDetail
	err = c.postJSON(ctx, "/api/v3/jobs/", body, &j)
	return j, jobRejected(err)
}

// SubmitJob starts a created job (POST /api/v2/jobs/{id}/submit/; submission stays on v2).
func (c *Client) SubmitJob(ctx context.Context, jobID string) error {
	return c.jobAction(ctx, http.MethodPost, "/api/v2/jobs/", jobID, "submit/")
}

// StopJob asks the platform to stop a job (202); the job then passes through Stopping to Completed.
func (c *Client) StopJob(ctx context.Context, jobID string) error {
	return c.jobAction(ctx, http.MethodPost, "/api/v2/jobs/", jobID, "stop/")
}

// StopRun asks the platform to stop one run of a job, a DOE row (POST /api/v2/jobs/{id}/runs/{run}/stop/
// [C]); the job's other runs go on.
func (c *Client) StopRun(ctx context.Context, jobID, runID string) error {
	p, err := runPath(jobID, runID)
	if err != nil {
		return err
	}
	return c.doJSON(ctx, &request{method: http.MethodPost, path: p + "stop/"}, nil)
}

// StopJobV3 is StopJob through v3.
func (c *Client) StopJobV3(ctx context.Context, jobID string) error {
	return c.jobAction(ctx, http.MethodPost, "/api/v3/jobs/", jobID, "stop/")
}

// DeleteJob deletes a job (204); the platform refuses it while the job's cluster runs.
func (c *Client) DeleteJob(ctx context.Context, jobID string) error {
	return c.jobAction(ctx, http.MethodDelete, "/api/v2/jobs/", jobID, "")
}

// DeleteJobV3 is DeleteJob through v3.
func (c *Client) DeleteJobV3(ctx context.Context, jobID string) error {
	return c.jobAction(ctx, http.MethodDelete, "/api/v3/jobs/", jobID, "")
}

func (c *Client) jobAction(ctx context.Context, method, base, jobID, action string) error {
	id, err := segment("job id", jobID)
	if err != nil {
		return err
	}
	return c.doJSON(ctx, &request{method: method, path: base + id + "/" + action}, nil)
}

// GetJobDetail is one job's detail with its analyses (v2: no jobStatus).
func (c *Client) GetJobDetail(ctx context.Context, jobID string) (JobDetail, error) {
	return c.jobDetail(ctx, "/api/v2/jobs/", jobID)
}

// GetJobV3 is one job's detail through v3, which carries jobStatus.
func (c *Client) GetJobV3(ctx context.Context, jobID string) (JobDetail, error) {
	return c.jobDetail(ctx, "/api/v3/jobs/", jobID)
}

func (c *Client) jobDetail(ctx context.Context, base, jobID string) (JobDetail, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return JobDetail{}, err
	}
	var j JobDetail
	err = c.getJSON(ctx, base+id+"/", nil, &j)
	return j, err
}

// ListJobsV3 lists every job through v3, newest first (ordering=-dateInserted, as Rescale's Go client asks).
func (c *Client) ListJobsV3(ctx context.Context) ([]Job, error) {
	return listAll[Job](ctx, c, "/api/v3/jobs/", url.Values{"ordering": {"-dateInserted"}}, nil)
}

// JobStatusesV3 is a job's status history through v3, newest first.
func (c *Client) JobStatusesV3(ctx context.Context, jobID string) (Statuses, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return nil, err
	}
	s, err := listAll[Status](ctx, c, "/api/v3/jobs/"+id+"/statuses/", nil, nil)
	return Statuses(s), err
}

// CoreTypes lists the platform's core types.
func (c *Client) CoreTypes(ctx context.Context) ([]CoreType, error) {
	return listAll[CoreType](ctx, c, "/api/v2/coretypes/", nil, nil)
}

// Analyses lists the platform's analyses (software) with their versions.
func (c *Client) Analyses(ctx context.Context) ([]Analysis, error) {
	return listAll[Analysis](ctx, c, "/api/v2/analyses/", nil, nil)
}

// MyFolders is GET /api/v3/users/me/folders/.
func (c *Client) MyFolders(ctx context.Context) (Folders, error) {
	var raw struct {
		MyJobs    json.RawMessage `json:"myJobs"`
		MyLibrary json.RawMessage `json:"myLibrary"`
	}
	if err := c.getJSON(ctx, "/api/v3/users/me/folders/", nil, &raw); err != nil {
		return Folders{}, err
	}
	jobs, err := idString(raw.MyJobs)
	if err != nil {
		return Folders{}, err
	}
	lib, err := idString(raw.MyLibrary)
	return Folders{MyJobs: jobs, MyLibrary: lib}, err
}

// LibraryFilesV3 lists the user's library through v3, newest first (ordering=-dateUploaded).
func (c *Client) LibraryFilesV3(ctx context.Context) ([]File, error) {
	return listAll(ctx, c, "/api/v3/files/", url.Values{"ordering": {"-dateUploaded"}}, keepAvailable)
}

// NewestLibraryFile is the newest library file named exactly name (the SDK's "search and take the first"
// is a substring match, which picks "build.tar.gz.old" for "build.tar.gz" [I]). ErrNotFound when none.
func (c *Client) NewestLibraryFile(ctx context.Context, name string) (File, error) {
	files, err := c.LibraryFiles(ctx, name)
	if err != nil {
		return File{}, err
	}
	files = slices.DeleteFunc(files, func(f File) bool { return f.Name != name })
	if len(files) == 0 {
		return File{}, fmt.Errorf("library file %q: %w", name, ErrNotFound)
	}
	slices.SortStableFunc(files, func(a, b File) int { return b.DateUploaded.Compare(a.DateUploaded.Time) })
	return files[0], nil
}
