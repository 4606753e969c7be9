package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The admin endpoints under /_emulator/ (loopback clients only, with the API key) let a shell drive the
// emulator: counters, faults, publishing a local directory as a job's outputs, adding a running job.

func (e *Emulator) adminRoute(r *http.Request, rest string) route {
	admin := func(name string, h http.HandlerFunc) route { return route{name, kindAdmin, h} }
	switch {
	case rest == "stats" && r.Method == http.MethodGet:
		return admin(EndpointStats, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, e.Counters()) })
	case rest == "stats/reset" && r.Method == http.MethodPost:
		return admin(EndpointAdmin, func(w http.ResponseWriter, r *http.Request) {
			e.ResetCounters()
			w.WriteHeader(http.StatusNoContent)
		})
	case rest == "faults" && r.Method == http.MethodGet:
		return admin(EndpointAdmin, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, e.Faults()) })
	case rest == "faults" && r.Method == http.MethodPut:
		return admin(EndpointAdmin, e.serveSetFaults)
	case rest == "jobs" && r.Method == http.MethodPost:
		return admin(EndpointAdmin, e.serveAddJob)
	case rest == "publish" && r.Method == http.MethodPost:
		return admin(EndpointAdmin, e.servePublish)
	case strings.HasPrefix(rest, "jobs/") && strings.HasSuffix(rest, "/complete") && r.Method == http.MethodPost:
		id := strings.TrimSuffix(strings.TrimPrefix(rest, "jobs/"), "/complete")
		return admin(EndpointAdmin, func(w http.ResponseWriter, r *http.Request) {
			if err := e.CompleteJob(id); err != nil {
				writeDetail(w, http.StatusNotFound, err.Error())
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
	}
	return admin(EndpointAdmin, func(w http.ResponseWriter, r *http.Request) { writeDetail(w, http.StatusNotFound, "Not found.") })
}

func (e *Emulator) serveSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&f); err != nil {
		writeDetail(w, http.StatusBadRequest, err.Error())
		return
	}
	e.SetFaults(f)
	writeJSON(w, http.StatusOK, e.Faults())
}

// AddJobRequest is the body of POST /_emulator/jobs.
type AddJobRequest struct {
	Name     string `json:"name"`
	Duration string `json:"duration"` // Go duration: how long until Completed
	Fail     bool   `json:"fail"`
}

// AdminJobResponse answers POST /_emulator/jobs and /_emulator/publish.
type AdminJobResponse struct {
	ID          string `json:"id"`
	Files       int    `json:"files"`
	CompletesAt string `json:"completesAt"`
}

func (e *Emulator) serveAddJob(w http.ResponseWriter, r *http.Request) {
	var in AddJobRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		writeDetail(w, http.StatusBadRequest, err.Error())
		return
	}
	d, err := time.ParseDuration(in.Duration)
	if err != nil || d <= 0 {
		writeFieldErrors(w, "duration", "A positive duration such as 2m is required.")
		return
	}
	j, err := e.AddJob(JobSpec{Name: in.Name, RunFor: d, Fail: in.Fail, Files: caseOutputs(in.Name)})
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, AdminJobResponse{ID: j.ID, Files: len(j.Files), CompletesAt: fmtTime(j.CompletesAt)})
}

// PublishRequest is the body of POST /_emulator/publish: a directory on the emulator's machine.
type PublishRequest struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
}

func (e *Emulator) servePublish(w http.ResponseWriter, r *http.Request) {
	var in PublishRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
		writeDetail(w, http.StatusBadRequest, err.Error())
		return
	}
	j, err := e.PublishDir(in.Name, in.Dir)
	if err != nil {
		writeDetail(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusCreated, AdminJobResponse{ID: j.ID, Files: len(j.Files), CompletesAt: fmtTime(j.CompletesAt)})
}

// PublishDir adds a completed job whose outputs are the regular files under dir (relative paths kept;
// symlinks and special files skipped). name "" = the directory's base name.
func (e *Emulator) PublishDir(name, dir string) (Job, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Job{}, err
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return Job{}, fmt.Errorf("publish %s: not a directory", dir)
	}
	if name == "" {
		name = filepath.Base(abs)
	}
	var specs []FileSpec
	err = filepath.WalkDir(abs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(abs, p)
		if err != nil {
			return err
		}
		specs = append(specs, FileSpec{RelativePath: filepath.ToSlash(rel), Size: info.Size(), Content: &lazyFile{path: p}})
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("publish %s: %w", dir, err)
	}
	return e.AddJob(JobSpec{Name: name, Files: specs})
}

// lazyFile opens its file on first read and closes it at EOF or on an error: publishing a directory of 10,000 files
// holds one descriptor at a time.
type lazyFile struct {
	path string
	f    *os.File
	done bool
}

func (l *lazyFile) Read(p []byte) (int, error) {
	if l.done {
		return 0, io.EOF
	}
	if l.f == nil {
		f, err := os.Open(l.path)
		if err != nil {
			return 0, err
		}
		l.f = f
	}
	n, err := l.f.Read(p)
	if err != nil { // EOF or a failed read: either way the descriptor is not kept
		l.f.Close()
		l.done = true
	}
	return n, err
}
