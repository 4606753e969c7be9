package emulator

import (
	"crypto/md5"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/rescalefs/rescalefs/remote/cbc"
)

// processOutputLog is the log every job has: the run's stdout and stderr [C].
const processOutputLog = "process_output.log"

// Output and input type ids [C].
const (
	TypeInput  = 1
	TypeOutput = 5
)

// FileSpec is one output file of a job added with AddJob.
type FileSpec struct {
	RelativePath string    // path in the run's working directory, sub-folders with "/"
	Size         int64     // plaintext size; checked against Content unless negative
	Content      io.Reader // nil = Size deterministic pseudo-random bytes from Seed, generated, never stored
	Seed         int64     // for generated content; 0 = derived from the job id and path
}

// JobSpec describes a job for AddJob.
type JobSpec struct {
	ID         string        // "" = a fresh id
	Name       string        // "" = "job"
	Analysis   string        // "" = "OpenFOAM"
	Created    time.Time     // dateInserted; zero = now (running) or the start of a history ending now (completed)
	RunFor     time.Duration // 0 = completed already; > 0 = submitted now and Completed after RunFor
	Fail       bool          // the run fails: Stopping ("A run failed"), then Completed
	Files      []FileSpec    // outputs; a process_output.log is added when absent
	SharedWith []string
}

// Job is what AddJob created.
type Job struct {
	ID          string
	Name        string
	Created     time.Time
	CompletesAt time.Time
	Files       []FileInfo
}

// FileInfo is a stored file.
type FileInfo struct {
	ID           string
	Name         string
	RelativePath string
	JobID        string
	TypeID       int
	Size         int64
	SHA512       string // hex, of the plaintext
	ObjectKey    string // S3 key in StorageBucket
}

func fileInfo(f *fileRecord) FileInfo {
	return FileInfo{ID: f.ID, Name: f.Name, RelativePath: f.RelativePath, JobID: f.JobID, TypeID: f.TypeID,
		Size: f.Size, SHA512: f.SHA512, ObjectKey: f.ObjectKey}
}

// AddJob adds a job with its outputs: completed already, or running for spec.RunFor from now. Outputs are
// stored at once and listed when the job completes.
func (e *Emulator) AddJob(spec JobSpec) (Job, error) {
	now := e.now()
	if spec.Name == "" {
		spec.Name = "job"
	}
	if spec.Analysis == "" {
		spec.Analysis = "OpenFOAM"
	}
	e.mu.Lock()
	id := spec.ID
	if id == "" {
		id = e.newIDLocked(5)
	} else if _, taken := e.st.jobs[id]; taken {
		e.mu.Unlock()
		return Job{}, fmt.Errorf("add job: id %s is taken", id)
	}
	e.mu.Unlock()

	j := &jobRecord{ID: id, Name: spec.Name, Owner: userEmail, Analysis: spec.Analysis, Created: spec.Created,
		Fail: spec.Fail, SharedWith: spec.SharedWith}
	if spec.RunFor > 0 {
		if j.Created.IsZero() {
			j.Created = now
		}
		j.Submitted, j.Lifecycle = now, e.lifecycle.fitTo(spec.RunFor)
	} else {
		j.Lifecycle = e.lifecycle
		total := j.Lifecycle.beforeExecuting() + j.Lifecycle.Executing
		if j.Fail {
			total += j.Lifecycle.Stopping
		}
		if j.Created.IsZero() {
			j.Created = now.Add(-total)
		}
		j.Submitted = j.Created
		if j.Created.Add(total).After(now) {
			j.CompleteAt = now
		}
	}
	specs := spec.Files
	if !hasLog(specs) {
		specs = append(specs, FileSpec{RelativePath: processOutputLog, Size: -1,
			Content: strings.NewReader(processLog(spec.Name, id, spec.Fail, 400))})
	}
	files, objs, err := e.buildFiles(id, specs)
	if err != nil {
		return Job{}, err
	}
	recs := make([]record, 0, 2*len(files)+1)
	for _, o := range objs {
		recs = append(recs, record{Object: o})
	}
	recs = append(recs, record{Job: j})
	for _, f := range files {
		recs = append(recs, record{File: f})
	}
	e.mu.Lock()
	if _, taken := e.st.jobs[id]; taken {
		e.mu.Unlock()
		return Job{}, fmt.Errorf("add job: id %s is taken", id)
	}
	err = e.commitLocked(recs...)
	e.mu.Unlock()
	if err != nil {
		return Job{}, err
	}
	out := Job{ID: id, Name: j.Name, Created: j.Created, CompletesAt: j.view(now).endsAt}
	for _, f := range files {
		out.Files = append(out.Files, fileInfo(f))
	}
	return out, nil
}

func hasLog(specs []FileSpec) bool {
	for _, s := range specs {
		if s.RelativePath == processOutputLog {
			return true
		}
	}
	return false
}

// addFiles stores more outputs for an existing job (a job submitted through the API).
func (e *Emulator) addFiles(jobID string, specs []FileSpec) error {
	files, objs, err := e.buildFiles(jobID, specs)
	if err != nil {
		return err
	}
	var recs []record
	for _, o := range objs {
		recs = append(recs, record{Object: o})
	}
	for _, f := range files {
		recs = append(recs, record{File: f})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.commitLocked(recs...)
}

// buildFiles stores the content of output files (outside the lock: it can take a while) and returns their
// records, not yet committed.
func (e *Emulator) buildFiles(jobID string, specs []FileSpec) ([]*fileRecord, []*objectRecord, error) {
	e.mu.Lock()
	base := e.pathBaseLocked()
	ids := make([]string, len(specs))
	taken := map[string]bool{}
	for i := range specs {
		for {
			ids[i] = e.newIDLocked(6)
			if !taken[ids[i]] {
				taken[ids[i]] = true
				break
			}
		}
	}
	e.mu.Unlock()
	files := make([]*fileRecord, 0, len(specs))
	objs := make([]*objectRecord, 0, len(specs))
	for i, s := range specs {
		rel := strings.Trim(s.RelativePath, "/")
		if rel == "" {
			return nil, nil, errors.New("add job: a file has an empty relative path")
		}
		key := outputObjectKey(base, jobID, rel)
		var f *fileRecord
		var o *objectRecord
		var err error
		if s.Content == nil {
			seed := uint64(s.Seed)
			if seed == 0 {
				h := fnv.New64a()
				io.WriteString(h, jobID+"/"+rel)
				seed = h.Sum64()
			}
			f, o, err = e.generated(key, seed, max(0, s.Size))
		} else {
			f, o, err = e.stored(key, s.Content, s.Size)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("add job %s file %s: %w", jobID, rel, err)
		}
		f.ID, f.Name, f.RelativePath, f.JobID, f.RunID, f.TypeID = ids[i], path.Base(rel), rel, jobID, "1", TypeOutput
		files, objs = append(files, f), append(objs, o)
	}
	return files, objs, nil
}

// objectMeta is the metadata of an object the emulator writes itself, as Rescale's clients write it.
func objectMeta(iv []byte, at time.Time) map[string]string {
	return map[string]string{
		metaIV:          base64.StdEncoding.EncodeToString(iv),
		"Last-Modified": at.UTC().Format(http.TimeFormat),
		"Content-Type":  "application/octet-stream",
	}
}

// generated makes a file whose content is generated (gen.go): nothing is stored.
func (e *Emulator) generated(key string, seed uint64, size int64) (*fileRecord, *objectRecord, error) {
	k, iv := genKeys(seed)
	spec := genSpec{Seed: seed, Key: k, IV: iv, PlainSize: size}
	sum, err := genPlainSHA512(spec)
	if err != nil {
		return nil, nil, err
	}
	var sb [8]byte
	binary.BigEndian.PutUint64(sb[:], seed)
	etag := md5.Sum(append(sb[:], byte(size), byte(size>>8), byte(size>>16), byte(size>>24), byte(size>>32)))
	now := e.now()
	o := &objectRecord{Key: key, Size: cbc.CiphertextSize(size), ETag: hex.EncodeToString(etag[:]),
		Meta: objectMeta(iv, now), Modified: now, Gen: &spec}
	return &fileRecord{Size: size, Key: k, SHA512: sum, ObjectKey: key, Owner: userEmail}, o, nil
}

// stored encrypts content into a new blob with a fresh key and IV, streaming: constant memory.
func (e *Emulator) stored(key string, content io.Reader, size int64) (*fileRecord, *objectRecord, error) {
	k, iv := cbc.NewKey(), cbc.NewIV()
	sum := sha512.New()
	counted := &countingReader{r: io.TeeReader(content, sum)}
	enc, err := cbc.NewEncryptingReader(counted, k, iv)
	if err != nil {
		return nil, nil, err
	}
	bw, err := e.blobs.create()
	if err != nil {
		return nil, nil, err
	}
	etag := md5.New()
	if _, err := io.Copy(io.MultiWriter(bw, etag), enc); err != nil {
		bw.abort()
		return nil, nil, err
	}
	if size >= 0 && counted.n != size {
		bw.abort()
		return nil, nil, fmt.Errorf("content is %d bytes, expected %d", counted.n, size)
	}
	ref, err := bw.commit()
	if err != nil {
		return nil, nil, err
	}
	now := e.now()
	o := &objectRecord{Key: key, Size: ref.Size, ETag: hex.EncodeToString(etag.Sum(nil)), Meta: objectMeta(iv, now),
		Modified: now, Blobs: []blobRef{ref}}
	f := &fileRecord{Size: counted.n, Key: k, SHA512: hex.EncodeToString(sum.Sum(nil)), ObjectKey: key, Owner: userEmail}
	return f, o, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// libraryObjectKey is where an upload of name lands: {pathBase}/{name}-{22 random letters/digits}, as
// Rescale's clients name direct uploads [C].
func libraryObjectKey(pathBase, name string) string {
	return pathBase + "/" + name + "-" + randomID(22)
}

// AddLibraryFile stores a file in the user's library (typeId 1), as an upload would. size is checked
// against content unless negative.
func (e *Emulator) AddLibraryFile(name string, content io.Reader, size int64) (FileInfo, error) {
	e.mu.RLock()
	key := libraryObjectKey(e.pathBaseLocked(), name)
	e.mu.RUnlock()
	f, o, err := e.stored(key, content, size)
	if err != nil {
		return FileInfo{}, fmt.Errorf("add library file %s: %w", name, err)
	}
	f.Name, f.TypeID, f.Uploaded = name, TypeInput, e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	f.ID = e.newIDLocked(6)
	if err := e.commitLocked(record{Object: o}, record{File: f}); err != nil {
		return FileInfo{}, err
	}
	return fileInfo(f), nil
}
