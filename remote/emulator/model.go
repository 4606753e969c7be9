package emulator

import (
	"time"
)

// The records below are the emulator's own state: what the journal persists and what the handlers read.
// They are deliberately separate from the wire structs (wire.go), which re-state rescale-api.md.

// jobRecord is one job. Its statuses are not stored: they are computed from Created, Submitted,
// Lifecycle and the stop/complete marks against the clock (lifecycle.go), so a restart or an injected
// clock moves every job on consistently.
type jobRecord struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Owner      string    `json:"owner"`
	Analysis   string    `json:"analysis"`
	Created    time.Time `json:"created"`
	Submitted  time.Time `json:"submitted,omitzero"` // zero: created through the API, not yet submitted
	Lifecycle  Lifecycle `json:"lifecycle"`          // the durations this job runs with
	Fail       bool      `json:"fail,omitempty"`     // ends through Stopping ("A run failed")
	StopAt     time.Time `json:"stopAt,omitzero"`    // stop requested by the user
	CompleteAt time.Time `json:"completeAt,omitzero"`
	SharedWith []string  `json:"sharedWith,omitempty"`
	Deleted    bool      `json:"deleted,omitempty"`

	Spec    *jobSpecJSON `json:"spec,omitempty"`    // the body it was created with (API-created jobs)
	Execute bool         `json:"execute,omitempty"` // submitted to the local executor (--run-jobs)
	Exec    *execRecord  `json:"exec,omitempty"`    // what the executor did so far
}

// execRecord is the executor's account of a job: its runs and, once over, how it ended.
type execRecord struct {
	Runs   []execRun `json:"runs"`
	Ended  time.Time `json:"ended,omitzero"`
	Reason string    `json:"reason,omitempty"` // the statusReason of Completed
}

// execRun is one run (one DOE row, or the single run of a plain job).
type execRun struct {
	ID        string        `json:"id"`
	Started   time.Time     `json:"started,omitzero"`
	Completed time.Time     `json:"completed,omitzero"`
	ExitCode  int           `json:"exitCode"`
	Variables []runVariable `json:"variables,omitempty"`
}

// fileRecord is one file: a job output (JobID set) or a library file.
type fileRecord struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	RelativePath string    `json:"relativePath,omitempty"`
	JobID        string    `json:"jobId,omitempty"`
	RunID        string    `json:"runId,omitempty"`
	TypeID       int       `json:"typeId"`
	Size         int64     `json:"size"` // plaintext (decryptedSize)
	Key          []byte    `json:"key"`  // AES-256 key (encodedEncryptionKey)
	SHA512       string    `json:"sha512"`
	ObjectKey    string    `json:"objectKey"`         // the S3 object holding the ciphertext
	Uploaded     time.Time `json:"uploaded,omitzero"` // zero for job outputs: the job's completion time
	Owner        string    `json:"owner"`
	Deleted      bool      `json:"deleted,omitempty"`
}

// blobRef is one stored byte run of an object: a whole PutObject, or one part of a multipart upload.
type blobRef struct {
	ID   string `json:"id"`
	Size int64  `json:"size"`
}

// objectRecord is one S3 object (ciphertext). Its bytes are either the concatenation of Blobs, or, for
// sample and AddJob files given no content, generated on the fly from Gen (gen.go) and never stored.
type objectRecord struct {
	Key       string            `json:"key"`
	Size      int64             `json:"size"`
	ETag      string            `json:"etag"` // hex, without quotes; "-N" suffix for multipart objects
	Meta      map[string]string `json:"meta"` // canonical header names: "X-Amz-Meta-Iv", "Last-Modified", ...
	Modified  time.Time         `json:"modified"`
	Blobs     []blobRef         `json:"blobs,omitempty"`
	Gen       *genSpec          `json:"gen,omitempty"`
	PartSizes []int64           `json:"partSizes,omitempty"`
}

// uploadRecord is one S3 multipart upload in progress. It is journaled after every part so an
// emulator restarted mid-upload still knows the upload and its parts (s3.go restores them into
// gofakes3, whose own bookkeeping is memory only).
type uploadRecord struct {
	ID        string             `json:"id"`
	Bucket    string             `json:"bucket"`
	Key       string             `json:"key"`
	Meta      map[string]string  `json:"meta"`
	Initiated time.Time          `json:"initiated"`
	Parts     map[int]partRecord `json:"parts"`
}

type partRecord struct {
	Blob blobRef   `json:"blob"`
	ETag string    `json:"etag"` // quoted, as sent to the client
	MD5  string    `json:"md5"`  // hex
	At   time.Time `json:"at"`
}

// credRecord is one set of temporary storage credentials from /api/v3/credentials/.
type credRecord struct {
	AccessKey    string    `json:"accessKey"`
	SecretKey    string    `json:"secretKey"`
	SessionToken string    `json:"sessionToken"`
	Expires      time.Time `json:"expires"`
}

// metaRecord is the identity of the emulated account: kept so a restart serves the same key and user.
type metaRecord struct {
	APIKey string `json:"apiKey"`
	UserID string `json:"userId"`
}

// record is one journal line: an upsert of one thing (or a deletion, by Del + the key).
type record struct {
	Meta   *metaRecord   `json:"meta,omitempty"`
	Job    *jobRecord    `json:"job,omitempty"`
	File   *fileRecord   `json:"file,omitempty"`
	Object *objectRecord `json:"object,omitempty"`
	Upload *uploadRecord `json:"upload,omitempty"`
	Cred   *credRecord   `json:"cred,omitempty"`
	// DelObject / DelUpload remove the object or multipart upload with that key or id.
	DelObject string `json:"delObject,omitempty"`
	DelUpload string `json:"delUpload,omitempty"`
}

// state is everything the emulator knows. Emulator.mu guards it.
type state struct {
	meta     metaRecord
	jobs     map[string]*jobRecord
	files    map[string]*fileRecord
	jobFiles map[string][]string // job id -> its output file ids, in insertion order
	library  []string            // library file ids, in insertion order
	objects  map[string]*objectRecord
	uploads  map[string]*uploadRecord
	creds    map[string]*credRecord
}

func newState() *state {
	return &state{
		jobs:     map[string]*jobRecord{},
		files:    map[string]*fileRecord{},
		jobFiles: map[string][]string{},
		objects:  map[string]*objectRecord{},
		uploads:  map[string]*uploadRecord{},
		creds:    map[string]*credRecord{},
	}
}

// apply replays one record into the state (journal load) or applies a fresh one (a mutation).
func (s *state) apply(r record) {
	switch {
	case r.Meta != nil:
		s.meta = *r.Meta
	case r.Job != nil:
		j := *r.Job
		s.jobs[j.ID] = &j
	case r.File != nil:
		f := *r.File
		if _, known := s.files[f.ID]; !known {
			if f.JobID != "" {
				s.jobFiles[f.JobID] = append(s.jobFiles[f.JobID], f.ID)
			} else {
				s.library = append(s.library, f.ID)
			}
		}
		s.files[f.ID] = &f
	case r.Object != nil:
		o := *r.Object
		s.objects[o.Key] = &o
	case r.Upload != nil:
		u := *r.Upload
		s.uploads[u.ID] = &u
	case r.Cred != nil:
		c := *r.Cred
		s.creds[c.AccessKey] = &c
	case r.DelObject != "":
		delete(s.objects, r.DelObject)
	case r.DelUpload != "":
		delete(s.uploads, r.DelUpload)
	}
}

// snapshot returns records that rebuild the state: what a compacted journal holds.
func (s *state) snapshot() []record {
	recs := []record{{Meta: &s.meta}}
	for _, o := range s.objects {
		recs = append(recs, record{Object: o})
	}
	for _, j := range s.jobs {
		recs = append(recs, record{Job: j})
	}
	for _, id := range s.library {
		recs = append(recs, record{File: s.files[id]})
	}
	for _, ids := range s.jobFiles {
		for _, id := range ids {
			recs = append(recs, record{File: s.files[id]})
		}
	}
	for _, u := range s.uploads {
		recs = append(recs, record{Upload: u})
	}
	for _, c := range s.creds {
		recs = append(recs, record{Cred: c})
	}
	return recs
}
