package upload

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The journal is one small JSON file per upload, <id>.json, replaced atomically (write a temporary
// file, fsync it, rename it over the old one, fsync the directory), plus an append-only log of the
// upload's finished parts, <id>.parts, one JSON line per part, fsynced after each line. Rewriting the
// record only on state changes and appending a line per part keeps a many-part upload at one small
// write per part, however many parts it has.
//
// A crash can leave: a stray <id>.json.tmp (removed on load); a torn last line in <id>.parts (that part
// is simply sent again); a record whose data file was not yet moved into pending/ (the move is finished
// on load). Anything else that does not read back is moved to damaged/ and reported, never dropped.

// recordVersion is the format of a record; a record of another version is reported as damaged.
const recordVersion = 1

// record is what the journal keeps of one upload.
type record struct {
	Version int    `json:"v"`
	ID      string `json:"id"`
	Name    string `json:"name"`             // the name it will be published under
	Source  string `json:"source,omitempty"` // the staging path Enqueue moved the data from
	Data    string `json:"data"`             // the data file, under pending/
	Size    int64  `json:"size"`             // plaintext bytes; fixed once SHA512 is set
	SHA512  string `json:"sha512,omitempty"` // hex of the plaintext; set before any byte is sent
	// SumFromWriter: SHA512 is the one the file's writer computed as it wrote (EnqueueHashed), not
	// checked against the data by the engine yet.
	SumFromWriter bool      `json:"sumFromWriter,omitempty"`
	State         State     `json:"state"`
	Created       time.Time `json:"created"`

	// Direct (multipart) uploads. Key and IV are set, and journaled, before the multipart upload is
	// created; S3UploadID right after.
	Key           string `json:"key,omitempty"` // base64 AES-256 key
	IV            string `json:"iv,omitempty"`  // base64 file IV
	Bucket        string `json:"bucket,omitempty"`
	ObjectKey     string `json:"objectKey,omitempty"`
	StorageID     string `json:"storageId,omitempty"`
	StorageType   string `json:"storageType,omitempty"`
	StorageEncr   string `json:"encryptionType,omitempty"`
	S3UploadID    string `json:"s3UploadId,omitempty"`
	PartSize      int64  `json:"partSize,omitempty"`
	ObjectDone    bool   `json:"objectDone,omitempty"`    // CompleteMultipartUpload succeeded
	PublishedSent bool   `json:"publishedSent,omitempty"` // a publishing request may have reached the platform
	// Sent are the names the publishing requests carried since the last known outcome (PublishedSent):
	// where a publication whose answer was lost is looked for. A record without (written before they
	// were kept) is looked for under Name.
	Sent []string `json:"sent,omitempty"`

	// Published is the library file the platform confirmed (State done), PublishedName the name its
	// request carried. The record stays until the fs layer has taken the confirmation (finish): one
	// renamed meanwhile (Name differs) is published again under Name, after a crash too (load).
	Published     string `json:"published,omitempty"`
	PublishedName string `json:"publishedName,omitempty"`
	// PublishedUnsure: Published was only taken for this upload's publication (a lost answer) and may
	// be another tool's upload of the same bytes: never booked for deletion (version.go).
	PublishedUnsure bool `json:"publishedUnsure,omitempty"`

	// Supersedes are library files this upload's publication replaces (Engine.Supersede): deleted once
	// it is published, never before (until then they hold the only copy on the platform).
	Supersedes []string `json:"supersedes,omitempty"`
	// Dropped are objects of this upload's earlier direct uploads that it stopped using: a stale
	// publication (under a name the file has left, booked in Supersedes) holds each, and the upload
	// sent a new object, so that the stale file's deletion cannot take the current data with it. Their
	// keys are ours (objectKey, random): each is deleted from the storage once the files in Supersedes
	// are deleted, last, so that no library file of ours is left holding a deleted object; the platform
	// may not delete an object with its file.
	Dropped []storedObject `json:"dropped,omitempty"`

	// Withdrawn: cancelled (removed or replaced in uploads/) while something of it may be on the
	// platform: a publication whose answer is not in (PublishedSent), files it superseded, a
	// multipart upload to abort, a completed object (ObjectDone) to delete. The data is gone; the record stays until those are deleted, so that
	// nothing cancelled stays published, across a restart too (a clean-up record: cleanup.go).
	Withdrawn bool `json:"withdrawn,omitempty"`
	// Replaces is the upload this one is a new version of (EnqueueVersion), which the fs layer
	// cancels once this one is queued; load withdraws it if a crash came first.
	Replaces string `json:"replaces,omitempty"`
	// Discards is the staging file of a new version of the upload, not queued yet, removed with it
	// (CancelVersion): journaled with Withdrawn, before it is discarded, so that the next start
	// discards it if a crash came first (load), rather than queue a version of a removed file.
	Discards string `json:"discards,omitempty"`

	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"lastError,omitempty"`
	NextTry   time.Time `json:"nextTry,omitzero"`
}

// storedObject is an object in the user's storage: bucket and key.
type storedObject struct {
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key"`
}

// partRecord is one line of <id>.parts: a part S3 has acknowledged.
type partRecord struct {
	Upload string `json:"u"` // the S3 upload id it belongs to; lines of an abandoned upload are ignored
	N      int32  `json:"n"`
	ETag   string `json:"etag"`
	Size   int64  `json:"size"`  // ciphertext bytes
	Chain  string `json:"chain"` // base64 of the last ciphertext block: the IV of part N+1
}

// journal is the directory of records.
type journal struct {
	dir string
}

func (j *journal) recordPath(id string) string { return filepath.Join(j.dir, id+".json") }
func (j *journal) partsPath(id string) string  { return filepath.Join(j.dir, id+".parts") }

// save replaces the record of r.ID durably.
func (j *journal) save(r *record) error {
	r.Version = recordVersion
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSync(j.recordPath(r.ID), append(b, '\n')); err != nil {
		return fmt.Errorf("journal %s: %w", r.ID, err)
	}
	return nil
}

// appendPart appends one finished part and fsyncs it.
func (j *journal) appendPart(id string, p partRecord) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(j.partsPath(id), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journal %s parts: %w", id, err)
	}
	_, werr := f.Write(append(b, '\n'))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("journal %s parts: %w", id, err)
	}
	return nil
}

// resetParts starts an empty parts log (a new multipart upload).
func (j *journal) resetParts(id string) error {
	return writeFileSync(j.partsPath(id), nil)
}

// repairParts drops a torn last line (a crash mid-append) from the parts log, so that appends go on
// after a clean line end.
func (j *journal) repairParts(id string) error {
	b, err := os.ReadFile(j.partsPath(id))
	if errors.Is(err, fs.ErrNotExist) || err == nil && (len(b) == 0 || b[len(b)-1] == '\n') {
		return nil
	}
	if err != nil {
		return err
	}
	return writeFileSync(j.partsPath(id), b[:bytes.LastIndexByte(b, '\n')+1])
}

// loadParts reads the parts log. A torn last line (a crash mid-append) is ignored; a bad line before
// the last one means the file was damaged and is an error.
func (j *journal) loadParts(id string) ([]partRecord, error) {
	b, err := os.ReadFile(j.partsPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []partRecord
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	var bad error
	for line := 1; sc.Scan(); line++ {
		if bad != nil {
			return nil, bad // a bad line followed by more lines: not a torn tail
		}
		var p partRecord
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil || p.N < 1 || p.ETag == "" {
			bad = fmt.Errorf("parts log line %d unreadable", line)
			continue
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if bad != nil && len(b) > 0 && b[len(b)-1] == '\n' {
		return nil, bad // the broken line was complete: damage, not a torn append
	}
	return out, nil
}

// remove deletes an upload's journal files (its data file is the caller's).
func (j *journal) remove(id string) error {
	err := errors.Join(removeIfExists(j.partsPath(id)), removeIfExists(j.recordPath(id)))
	return errors.Join(err, syncDir(j.dir))
}

// readRecord reads and checks one record file.
func readRecord(path, pendingDir string) (*record, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r record
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("record does not parse: %w", err)
	}
	id := strings.TrimSuffix(filepath.Base(path), ".json")
	switch {
	case r.Version != recordVersion:
		return nil, fmt.Errorf("record version %d, want %d", r.Version, recordVersion)
	case r.ID != id:
		return nil, fmt.Errorf("record id %q in file %s", r.ID, filepath.Base(path))
	case r.Name == "":
		return nil, errors.New("record has no name")
	case r.Size < 0:
		return nil, errors.New("record has a negative size")
	case filepath.Dir(r.Data) != filepath.Clean(pendingDir):
		return nil, fmt.Errorf("record data path %q outside the pending folder", r.Data)
	case r.S3UploadID != "" && (r.Key == "" || r.IV == "" || r.ObjectKey == "" || r.PartSize <= 0):
		return nil, errors.New("record has a multipart upload without key, IV, object or part size")
	}
	if !validState(r.State) {
		return nil, fmt.Errorf("record state %q unknown", r.State)
	}
	return &r, nil
}

// writeFileSync writes path atomically and durably: temporary file, fsync, rename, fsync of the folder.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// syncDir makes renames and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
