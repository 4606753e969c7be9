package download

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sync"
	"time"
)

// stateVersion is the format of the done-state file; another version is ignored (files re-hashed).
const stateVersion = 1

// stateSaveEvery bounds how often the done-state file is rewritten while a job downloads: it is written
// whole, so rewriting it per file would cost O(files^2) for a job with 100,000 files. Losing the last
// few seconds of it in a crash only means re-hashing those files at the next start.
const stateSaveEvery = 2 * time.Second

// doneRecord is a file known to be complete: it had this size, mtime and sha512 when verified, so while
// size and mtime are unchanged it is not hashed again.
type doneRecord struct {
	ID     string    `json:"id"`
	Size   int64     `json:"size"`
	MTime  time.Time `json:"mtime"`
	SHA512 string    `json:"sha512"`
}

// stateFile is the JSON of Dir/<jobId>/.rescalefs-done.json.
type stateFile struct {
	Version int    `json:"version"`
	JobID   string `json:"jobId"`
	// Complete says every file matching Query was downloaded: a restart with the same Query then only
	// checks the recorded files' sizes and mtimes, without listing the job.
	Complete    bool                  `json:"complete"`
	Query       string                `json:"query"`
	CompletedAt time.Time             `json:"completedAt,omitzero"`
	Succeeded   bool                  `json:"succeeded"`
	Files       map[string]doneRecord `json:"files"` // local relative path -> record
}

// jobRecord is one job's done-state while it downloads.
type jobRecord struct {
	root *os.Root
	dir  string // the job's folder, relative to root
	log  *slog.Logger

	// mu protects st, dirty and saved.
	mu    sync.Mutex
	st    stateFile
	dirty bool
	saved time.Time
}

// loadRecord reads a job's done-state; a missing, unreadable or foreign one starts empty (its files are
// then hashed once, not trusted).
func loadRecord(root *os.Root, jobID string, log *slog.Logger) *jobRecord {
	r := &jobRecord{root: root, dir: jobID, log: log,
		st: stateFile{Version: stateVersion, JobID: jobID, Files: map[string]doneRecord{}}}
	b, err := root.ReadFile(path.Join(jobID, stateName))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("cannot read a job's download record; its files will be checked again", "job", jobID, "err", err)
		}
		return r
	}
	var st stateFile
	if err := json.Unmarshal(b, &st); err != nil || st.Version != stateVersion || st.JobID != jobID {
		log.Warn("ignoring a job's download record it cannot use; its files will be checked again",
			"job", jobID, "err", err)
		return r
	}
	if st.Files == nil {
		st.Files = map[string]doneRecord{}
	}
	r.st = st
	return r
}

func (r *jobRecord) get(rel string) (doneRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rec, ok := r.st.Files[rel]
	return rec, ok
}

// put records a verified file and saves the record when the last save is old enough.
func (r *jobRecord) put(rel string, rec doneRecord, now time.Time) {
	r.mu.Lock()
	r.st.Files[rel] = rec
	r.dirty = true
	due := now.Sub(r.saved) >= stateSaveEvery
	r.mu.Unlock()
	if due {
		r.save(now)
	}
}

// finish sets what the job's outcome says about the record and saves it.
func (r *jobRecord) finish(complete bool, query string, completedAt time.Time, succeeded bool, keep map[string]bool, now time.Time) {
	r.mu.Lock()
	if complete && keep != nil {
		// Forget files no longer among the outputs (or no longer matching), so "complete" means
		// exactly the recorded files.
		for rel := range r.st.Files {
			if !keep[rel] {
				delete(r.st.Files, rel)
			}
		}
	}
	if r.st.Complete != complete || r.st.Query != query || !r.st.CompletedAt.Equal(completedAt) || r.st.Succeeded != succeeded {
		r.dirty = true
	}
	r.st.Complete, r.st.Query, r.st.CompletedAt, r.st.Succeeded = complete, query, completedAt, succeeded
	r.mu.Unlock()
	r.save(now)
}

// save writes the record when it changed: to a temporary file, fsynced, renamed over the old one.
// A failure is logged: it costs re-hashing at the next start, nothing else.
func (r *jobRecord) save(now time.Time) {
	r.mu.Lock()
	if !r.dirty {
		r.mu.Unlock()
		return
	}
	b, err := json.MarshalIndent(r.st, "", " ")
	r.dirty, r.saved = false, now
	r.mu.Unlock()
	if err == nil {
		err = writeFileAtomic(r.root, path.Join(r.dir, stateName), b, 0o666)
	}
	if err != nil {
		r.mu.Lock()
		r.dirty = true
		r.mu.Unlock()
		r.log.Warn("cannot save a job's download record", "job", r.dir, "err", err)
	}
}

// writeFileAtomic writes name (relative to root) so that it holds either the old or the new content.
func writeFileAtomic(root *os.Root, name string, b []byte, perm os.FileMode) error {
	tmp := name + ".tmp"
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// readStateInfo returns what a job's record says about the job itself, for a restart to skip its
// status history. ok is false unless the record is complete for query.
func readStateInfo(root *os.Root, jobID, query string) (completedAt time.Time, succeeded, ok bool) {
	b, err := root.ReadFile(path.Join(jobID, stateName))
	if err != nil {
		return time.Time{}, false, false
	}
	var st stateFile
	if json.Unmarshal(b, &st) != nil || st.Version != stateVersion || st.JobID != jobID || !st.Complete ||
		st.Query != query || st.CompletedAt.IsZero() {
		return time.Time{}, false, false
	}
	return st.CompletedAt, st.Succeeded, true
}

// probeFileMode returns the permission bits a new file gets under root (0666 less the umask, or what a
// default ACL says), by creating one: reading the umask would mean setting it, process-wide.
func probeFileMode(root *os.Root) (os.FileMode, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := reservedStem + "probe-" + hex.EncodeToString(rnd[:])
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o666)
	if err != nil {
		return 0, err
	}
	fi, err := f.Stat()
	f.Close()
	if rerr := root.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return 0, err
	}
	return fi.Mode().Perm(), nil
}
