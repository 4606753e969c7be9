package emulator

import (
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The live view of an executed run: directory-contents and tail read its work directory while it runs.

// execLiveDirLocked is the work directory of a run in progress, or live false.
func (e *Emulator) execLiveDirLocked(j *jobRecord, runID string) (dir string, live bool) {
	run, ok := e.execRunLocked(j, runID)
	if !ok || run.Started.IsZero() || !run.Completed.IsZero() || e.exec == nil {
		return "", false
	}
	return filepath.Join(e.exec.dir, j.ID, "run"+runID), true
}

func (e *Emulator) serveExecDirectoryLocked(w http.ResponseWriter, r *http.Request, j *jobRecord, runID string) {
	dir, live := e.execLiveDirLocked(j, runID)
	if !live {
		writeDetail(w, liveGoneStatus, "Run is not in progress.")
		return
	}
	entries := []directoryEntryJSON{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		entries = append(entries, directoryEntryJSON{
			Path:         rel,
			Resource:     baseURL(r) + "/api/v2/jobs/" + j.ID + "/runs/" + runID + "/tail/" + escapePath(rel),
			Size:         fi.Size(),
			LastModified: fmtTime(fi.ModTime()),
		})
		return nil
	})
	writeJSON(w, http.StatusOK, entries)
}

func (e *Emulator) serveExecTail(w http.ResponseWriter, r *http.Request, dir string, live bool, rel string) {
	if !live {
		writeDetail(w, liveGoneStatus, "Run is not in progress.")
		return
	}
	p, err := safeJoin(dir, rel)
	if err != nil {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	f, err := os.Open(p)
	if err != nil {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	size := fi.Size() // the file grows while we answer: serve what it held now
	if serveTailLines(w, r, size, func(from, n int64) ([]byte, error) {
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, from); err != nil && err != io.EOF {
			return nil, err
		}
		return buf, nil
	}) {
		return
	}
	http.ServeContent(w, r, "", fi.ModTime().Truncate(time.Second), io.NewSectionReader(f, 0, size))
}
