package upload

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Staging files. The fs layer writes a file dropped into uploads/ to a staging file (CreateStaging)
// and, until it hands it over with Enqueue, keeps a small record beside it, <file>.json (RecordStaging:
// replaced atomically and fsynced): the path the file has in uploads/ and, once its writer closed it,
// the size it was closed at, the data fsynced first. So a crash of the mount (kill -9, power loss)
// between a close and Enqueue loses nothing: New accounts for every staging file and TakeStaged hands
// the survivors to the fs layer, which queues the complete ones and shows the others back in uploads/.
//
// New's rules, per staging file:
//   - data with a record: kept and listed by TakeStaged (Complete when closed at the size it has);
//   - a record without data: the data was enqueued or discarded before its record went; removed;
//   - data without a record: empty, it is a file whose creation never returned (removed); otherwise it
//     is moved to damaged/ and reported, as is data whose record does not read back;
//   - <file>.json.tmp: a record write cut short (the previous record stands); removed.

// stagingRecordVersion is the format of a staging record; another version is reported as damaged.
const stagingRecordVersion = 1

// stagingExt names the record of staging file F: F + stagingExt.
const stagingExt = ".json"

// StagingRecord is what is kept with a staging file.
type StagingRecord struct {
	Version int `json:"v"`
	// Path is the file's slash-separated path in uploads/; its last element is the name it is
	// published under.
	Path string `json:"path"`
	// Closed: the writer closed the file, its data fsynced at Size bytes. A file not closed was cut off
	// mid-write by the crash and must not be published as if complete.
	Closed bool  `json:"closed,omitempty"`
	Size   int64 `json:"size,omitempty"`
	// Replaces is the pending upload this file is a new version of (cancelled when it is queued).
	Replaces string `json:"replaces,omitempty"`
	// TakesBack: the file is the queued upload Replaces taken back under a temporary name (writeback:
	// a rename of a queued file to one), which the caller cancels once this copy is sealed (Closed).
	// New finishes a take-back a crash cut short: sealed, the upload is withdrawn (the rename was
	// done: its old name must not be published); not sealed, the copy is discarded and the upload
	// stays (the rename never happened: the copy may be cut short, the upload holds the file).
	TakesBack bool `json:"takesBack,omitempty"`
	// Supersedes are publications of the upload Replaces that came in while this version was being
	// written (a version the user replaced, perhaps under a name left since), and Dropped the objects
	// of ours they hold: set by the engine (handOver; RecordStaging keeps them), carried into this
	// version's upload when it is queued, and deleted once it is published (version.go).
	Supersedes []string       `json:"supersedes,omitempty"`
	Dropped    []storedObject `json:"dropped,omitempty"`
}

// Staged is a staging file New found with a good record.
type Staged struct {
	Path    string // the staging file
	Size    int64  // its size on disk
	ModTime time.Time
	Record  StagingRecord
}

// Name is the name the file is published under.
func (s Staged) Name() string { return path.Base(s.Record.Path) }

// Complete says the writer closed the file at the size it has: it can be published as it is.
func (s Staged) Complete() bool { return s.Record.Closed && s.Record.Size == s.Size }

// RecordStaging replaces the record of the staging file at stagingPath durably. The publications
// the engine booked in it (Supersedes, Dropped) are kept.
func (e *Engine) RecordStaging(stagingPath string, r StagingRecord) error {
	if filepath.Dir(stagingPath) != e.staging {
		return fmt.Errorf("upload: %s is not a staging file", stagingPath)
	}
	if err := checkStagingPath(r.Path); err != nil {
		return err
	}
	e.stagingMu.Lock()
	defer e.stagingMu.Unlock()
	if old, err := readStagingRecord(stagingPath + stagingExt); err == nil {
		r.Supersedes, _ = appendMissing(r.Supersedes, old.Supersedes...)
		r.Dropped, _ = appendMissing(r.Dropped, old.Dropped...)
	}
	if err := writeStagingRecord(stagingPath, r); err != nil {
		return err
	}
	e.indexLocked(stagingPath, r.Replaces)
	return nil
}

// writeStagingRecord replaces the record of staging file stagingPath durably.
func writeStagingRecord(stagingPath string, r StagingRecord) error {
	r.Version = stagingRecordVersion
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := writeFileSync(stagingPath+stagingExt, append(b, '\n')); err != nil {
		return fmt.Errorf("upload: staging record: %w", err)
	}
	return nil
}

// DiscardStaging removes a staging file and its record (the data first: a record left alone by a
// crash is cleaned up by the next New).
func (e *Engine) DiscardStaging(stagingPath string) error {
	if filepath.Dir(stagingPath) != e.staging {
		return fmt.Errorf("upload: %s is not a staging file", stagingPath)
	}
	e.stagingMu.Lock()
	e.indexLocked(stagingPath, "")
	e.stagingMu.Unlock()
	return errors.Join(removeIfExists(stagingPath), removeIfExists(stagingPath+stagingExt), syncDir(e.staging))
}

// TakeStaged returns the staging files New found with their records, once (later calls return
// nothing). Each is the caller's to Enqueue, keep or DiscardStaging.
func (e *Engine) TakeStaged() []Staged {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := e.staged
	e.staged = nil
	return out
}

func checkStagingPath(p string) error {
	if p == "" || strings.ContainsRune(p, '\x00') || path.IsAbs(p) || path.Clean(p) != p ||
		p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("upload: bad staging path %q", p)
	}
	return nil
}

// loadStaging accounts for every file in staging/ (after load, which may finish moves out of it).
func (e *Engine) loadStaging() error {
	ents, err := os.ReadDir(e.staging)
	if err != nil {
		return fmt.Errorf("upload: staging: %w", err)
	}
	have := map[string]bool{}
	for _, ent := range ents {
		have[ent.Name()] = true
	}
	for _, ent := range ents {
		name := ent.Name()
		p := filepath.Join(e.staging, name)
		switch {
		case strings.HasSuffix(name, stagingExt+".tmp"):
			_ = os.Remove(p)
			continue
		case strings.HasSuffix(name, stagingExt):
			if !have[strings.TrimSuffix(name, stagingExt)] {
				_ = os.Remove(p) // its data was enqueued or discarded
			}
			continue
		case !ent.Type().IsRegular():
			continue
		}
		fi, err := ent.Info()
		if err != nil {
			return fmt.Errorf("upload: staging: %w", err)
		}
		r, rerr := readStagingRecord(p + stagingExt)
		switch {
		case errors.Is(rerr, fs.ErrNotExist) && fi.Size() == 0:
			_ = os.Remove(p) // created, but the creation never returned: nothing was written to it
			continue
		case errors.Is(rerr, fs.ErrNotExist):
			e.quarantineStaging(p, "", fi, "staging data without a record")
			continue
		case rerr != nil:
			e.quarantineStaging(p, "", fi, "staging record: "+rerr.Error())
			continue
		}
		e.staged = append(e.staged, Staged{Path: p, Size: fi.Size(), ModTime: fi.ModTime(), Record: *r})
	}
	return syncDir(e.staging)
}

func readStagingRecord(p string) (*StagingRecord, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var r StagingRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("record does not parse: %w", err)
	}
	switch {
	case r.Version != stagingRecordVersion:
		return nil, fmt.Errorf("record version %d, want %d", r.Version, stagingRecordVersion)
	case r.Size < 0:
		return nil, errors.New("record has a negative size")
	}
	if err := checkStagingPath(r.Path); err != nil {
		return nil, err
	}
	return &r, nil
}

// quarantineStaging moves a staging file that cannot be trusted, and its record if any, into damaged/.
func (e *Engine) quarantineStaging(p, name string, fi fs.FileInfo, reason string) {
	id := filepath.Base(p)
	e.quarantine(id, name, fi.Size(), fi.ModTime(), reason, p)
	if err := os.Rename(p+stagingExt, filepath.Join(e.damaged, id+".staging"+stagingExt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		e.log.Error("upload: moving a staging record aside", "file", p, "err", err)
	}
}
