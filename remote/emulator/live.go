package emulator

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// liveGoneStatus is what directory-contents and tail answer once the run is over (or before it has
// started) [I]: the docs say only that they fail.
const liveGoneStatus = http.StatusNotFound

// tailLinesMaxBytes bounds how far back ?lines=N looks from the end of a live file [I].
const tailLinesMaxBytes = 1 << 20

// liveFile is one file of a running job's working directory, as it stands now.
type liveFile struct {
	f       *fileRecord
	size    int64
	modTime time.Time
}

// liveFilesLocked lists the working directory of a running job at now: process_output.log grows with
// the run's progress; every other output appears, whole, at its own point of the run (spread evenly in
// output order), so a watcher sees files arrive while the job executes.
func (e *Emulator) liveFilesLocked(j *jobRecord, v jobView, progress float64, now time.Time) []liveFile {
	ids := e.st.jobFiles[j.ID]
	var out []liveFile
	run := v.execEnd.Sub(v.execStart)
	for i, id := range ids {
		f := e.st.files[id]
		if f.RelativePath == processOutputLog {
			out = append(out, liveFile{f, int64(progress * float64(f.Size)), now})
			continue
		}
		appear := float64(i+1) / float64(len(ids)+1)
		if v.execStart.IsZero() || progress < appear {
			continue
		}
		out = append(out, liveFile{f, f.Size, v.execStart.Add(time.Duration(appear * float64(run)))})
	}
	return out
}

func (e *Emulator) serveDirectoryContents(w http.ResponseWriter, r *http.Request, jobID, runID string) {
	now := e.now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	j, ok := e.jobLocked(w, jobID)
	if !ok {
		return
	}
	if j.Execute {
		e.serveExecDirectoryLocked(w, r, j, runID)
		return
	}
	v := j.view(now)
	progress, live := v.live(now)
	if !live || runID != "1" {
		writeDetail(w, liveGoneStatus, "Run is not in progress.")
		return
	}
	entries := []directoryEntryJSON{}
	for _, lf := range e.liveFilesLocked(j, v, progress, now) {
		entries = append(entries, directoryEntryJSON{
			Path:         lf.f.RelativePath,
			Resource:     baseURL(r) + "/api/v2/jobs/" + jobID + "/runs/1/tail/" + escapePath(lf.f.RelativePath),
			Size:         lf.size,
			LastModified: fmtTime(lf.modTime),
		})
	}
	writeJSON(w, http.StatusOK, entries)
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func (e *Emulator) serveTail(w http.ResponseWriter, r *http.Request, jobID, runID, path string) {
	now := e.now()
	e.mu.RLock()
	j, ok := e.jobLocked(w, jobID)
	if !ok {
		e.mu.RUnlock()
		return
	}
	if j.Execute {
		dir, live := e.execLiveDirLocked(j, runID)
		e.mu.RUnlock()
		e.serveExecTail(w, r, dir, live, path)
		return
	}
	v := j.view(now)
	progress, live := v.live(now)
	var found *liveFile
	if live && runID == "1" {
		for _, lf := range e.liveFilesLocked(j, v, progress, now) {
			if lf.f.RelativePath == path {
				found = &lf
				break
			}
		}
	}
	var obj *objectRecord
	if found != nil {
		obj = e.st.objects[found.f.ObjectKey]
	}
	e.mu.RUnlock()
	switch {
	case !live || runID != "1":
		writeDetail(w, liveGoneStatus, "Run is not in progress.")
		return
	case found == nil || obj == nil:
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	if serveTailLines(w, r, found.size, func(from, n int64) ([]byte, error) {
		var buf bytes.Buffer
		err := e.copyPlain(&buf, found.f, obj, from, n)
		return buf.Bytes(), err
	}) {
		return
	}
	e.servePlain(w, r, found.f, obj, found.size)
}

// serveTailLines answers a tail's ?lines=N, simulated or executed alike: the last N lines within
// tailLinesMaxBytes of the end of a file of size bytes, whose bytes [from, from+n) read returns. It
// reports false, having answered nothing, when the request has no lines parameter.
func serveTailLines(w http.ResponseWriter, r *http.Request, size int64, read func(from, n int64) ([]byte, error)) bool {
	ls := r.URL.Query().Get("lines")
	if ls == "" {
		return false
	}
	n, err := strconv.Atoi(ls)
	if err != nil || n < 0 {
		writeFieldErrors(w, "lines", "A valid integer is required.")
		return true
	}
	from := max(0, size-tailLinesMaxBytes)
	buf, err := read(from, size-from)
	if err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return true
	}
	lines := splitLines(buf)
	if from > 0 && len(lines) > 0 {
		lines = lines[1:] // the first one is cut
	}
	lines = lines[max(0, len(lines)-n):]
	writeJSON(w, http.StatusOK, map[string]any{"fileType": "text", "lines": lines})
	return true
}
