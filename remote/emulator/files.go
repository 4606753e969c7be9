package emulator

import (
	"bytes"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"time"
)

// Storage as the emulator presents it [I]: one S3 bucket, the user's files under user/<userId>.
const (
	StorageBucket  = "rescale-emulator"
	StorageRegion  = "us-east-1"
	storageID      = "emuS3"
	storageType    = "S3Storage"
	encryptionType = "default"
	userEmail      = "emulator@example.com" // the emulated account's login [I]
)

// searchMatches is how search= matches a file [I]: the docs say the files returned "contain this value",
// without saying in which field or whether case matters. The emulator matches a case-sensitive substring
// of the file name, the Transfer Manager's rule.
func searchMatches(f *fileRecord, search string) bool {
	return search == "" || strings.Contains(f.Name, search)
}

// deletedFilesListed says whether listings include deleted files (with isDeleted true) [I]. The docs tell
// clients to keep only isUploaded && !isDeleted, which implies listings can carry others.
const deletedFilesListed = true

// linesMaxBytes bounds GET /files/{id}/lines/: only that much of the file's start is split into lines [I].
const linesMaxBytes = 1 << 20

func (e *Emulator) pathBaseLocked() string { return "user/" + e.st.meta.UserID }

func outputObjectKey(pathBase, jobID, relPath string) string {
	return pathBase + "/output/job_" + jobID + "/run1/" + relPath
}

func (e *Emulator) storageJSONLocked(r *http.Request, withSettings bool) storageJSON {
	s := storageJSON{ID: storageID, StorageType: storageType, EncryptionType: encryptionType}
	if withSettings {
		s.ConnectionSettings = &connectionSettingsJSON{Region: StorageRegion, Container: StorageBucket,
			PathBase: e.pathBaseLocked(), Endpoint: baseURL(r)}
	}
	return s
}

// renderFileLocked is the file object of rescale-api.md. uploaded is the file's dateUploaded.
func (e *Emulator) renderFileLocked(r *http.Request, f *fileRecord, uploaded time.Time) fileJSON {
	return fileJSON{
		ID: f.ID, Name: f.Name, RelativePath: f.RelativePath, Path: f.ObjectKey, DecryptedSize: f.Size,
		DateUploaded: fmtTime(uploaded), TypeID: f.TypeID, IsUploaded: true, IsDeleted: f.Deleted,
		DownloadURL:          baseURL(r) + "/api/v2/files/" + f.ID + "/contents/",
		EncodedEncryptionKey: base64.StdEncoding.EncodeToString(f.Key),
		Owner:                f.Owner, SharedWith: []string{},
		FileChecksums: []checksumJSON{{HashFunction: "sha512", FileHash: f.SHA512}},
		PathParts:     pathPartsJSON{Container: StorageBucket, Path: f.ObjectKey},
		Storage:       e.storageJSONLocked(r, true),
	}
}

// visibleFileLocked returns a file the API may show now, with its dateUploaded: library files always,
// job outputs once their job has completed.
func (e *Emulator) visibleFileLocked(id string, now time.Time) (*fileRecord, time.Time, bool) {
	f, ok := e.st.files[id]
	if !ok {
		return nil, time.Time{}, false
	}
	if f.JobID == "" {
		return f, f.Uploaded, true
	}
	j, ok := e.st.jobs[f.JobID]
	if !ok || j.Deleted {
		return nil, time.Time{}, false
	}
	v := j.view(now)
	if !v.completed {
		return nil, time.Time{}, false
	}
	if !f.Uploaded.IsZero() {
		return f, f.Uploaded, true
	}
	return f, v.completedAt, true
}

func (e *Emulator) serveJobFiles(w http.ResponseWriter, r *http.Request, jobID, runID string) {
	now := e.now()
	search := r.URL.Query().Get("search")
	e.mu.RLock()
	defer e.mu.RUnlock()
	j, ok := e.st.jobs[jobID]
	execRunKnown := false
	if ok {
		_, execRunKnown = e.execRunLocked(j, runID)
	}
	if !ok || j.Deleted || (runID != "" && runID != "1" && !execRunKnown) {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	v := j.view(now)
	var files []*fileRecord
	if v.completed {
		for _, id := range e.st.jobFiles[jobID] {
			f := e.st.files[id]
			if (deletedFilesListed || !f.Deleted) && searchMatches(f, search) && (runID == "" || f.RunID == runID) {
				files = append(files, f)
			}
		}
	}
	paginate(w, r, files, func(f *fileRecord) any {
		up := f.Uploaded
		if up.IsZero() {
			up = v.completedAt
		}
		return e.renderFileLocked(r, f, up)
	})
}

func (e *Emulator) serveLibrary(w http.ResponseWriter, r *http.Request) {
	search := r.URL.Query().Get("search")
	e.mu.RLock()
	defer e.mu.RUnlock()
	var files []*fileRecord
	for _, id := range e.st.library {
		f := e.st.files[id]
		if (deletedFilesListed || !f.Deleted) && searchMatches(f, search) {
			files = append(files, f)
		}
	}
	paginate(w, r, files, func(f *fileRecord) any { return e.renderFileLocked(r, f, f.Uploaded) })
}

func (e *Emulator) serveFile(w http.ResponseWriter, r *http.Request, id string) {
	now := e.now()
	e.mu.RLock()
	defer e.mu.RUnlock()
	f, up, ok := e.visibleFileLocked(id, now)
	if !ok {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	writeJSON(w, http.StatusOK, e.renderFileLocked(r, f, up))
}

func (e *Emulator) serveFileDelete(w http.ResponseWriter, r *http.Request, id string) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	f, _, ok := e.visibleFileLocked(id, now)
	if !ok || f.Deleted {
		writeDetail(w, http.StatusNotFound, "Not found.")
		return
	}
	nf := *f
	nf.Deleted = true
	if !e.commitOrFailLocked(w, record{File: &nf}) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (e *Emulator) serveLines(w http.ResponseWriter, r *http.Request, id string) {
	f, obj, ok := e.storedFile(w, id)
	if !ok {
		return
	}
	var buf bytes.Buffer
	if err := e.copyPlain(&buf, f, obj, 0, min(f.Size, linesMaxBytes)); err != nil {
		writeDetail(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string][]string{"lines": splitLines(buf.Bytes())})
}

// splitLines splits b after each newline, keeping it, as Python's readlines does.
func splitLines(b []byte) []string {
	lines := []string{}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			lines = append(lines, string(b))
			break
		}
		lines = append(lines, string(b[:i+1]))
		b = b[i+1:]
	}
	return lines
}

// discardBody drains what a client sent so the connection can be reused.
func discardBody(r *http.Request) { _, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20)) }
