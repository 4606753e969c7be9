package download

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// testBlock is the cache block size of the tests: small, so small files span several blocks.
const testBlock = 64 << 10

// env is an emulated platform behind httptest, with a client, and a download folder.
type env struct {
	emu    *emulator.Emulator
	srv    *httptest.Server
	client *remote.Client
	dir    string
	log    *slog.Logger
	// failContents, when set, makes every files.contents request answer 500 (in front of the
	// emulator, so tests can switch it off, unlike FailNext queues).
	failContents atomic.Bool
	// rewrite maps relativePath values of job file listings to others, to serve names the emulator
	// would not store (absolute, NUL).
	rewrite map[string]string
	// gate, when set, is called with every files.contents request before the emulator answers it.
	gate atomic.Pointer[func()]
}

func newEnv(t *testing.T) *env {
	t.Helper()
	emu, err := emulator.New(emulator.Options{}) // the platform's published limits, enforced
	if err != nil {
		t.Fatalf("emulator: %v", err)
	}
	e := &env{emu: emu, dir: filepath.Join(t.TempDir(), "downloads"),
		log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(func() {
		e.srv.Close()
		emu.Close()
	})
	e.client, err = remote.New(remote.Options{
		BaseURL: e.srv.URL, APIKey: emu.APIKey(), Logger: e.log,
		MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, MaxRetryAfter: time.Second,
		MaxAttempts: 4, Limits: map[remote.Scope]float64{},
	})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return e
}

func (e *env) serve(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if g := e.gate.Load(); g != nil && strings.HasPrefix(p, "/api/v2/files/") && strings.HasSuffix(p, "/contents/") {
		(*g)()
	}
	if e.failContents.Load() && strings.HasPrefix(p, "/api/v2/files/") && strings.HasSuffix(p, "/contents/") {
		http.Error(w, `{"detail": "injected"}`, http.StatusInternalServerError)
		return
	}
	if len(e.rewrite) == 0 || !strings.HasPrefix(p, "/api/v2/jobs/") || !strings.HasSuffix(p, "/files/") {
		e.emu.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	e.emu.ServeHTTP(rec, r)
	var page map[string]any
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &page) != nil {
		w.WriteHeader(rec.Code)
		w.Write(rec.Body.Bytes())
		return
	}
	results, _ := page["results"].([]any)
	for _, x := range results {
		if f, ok := x.(map[string]any); ok {
			if to, ok := e.rewrite[f["relativePath"].(string)]; ok {
				f["relativePath"] = to
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(page)
}

// newCache is a fresh memory-only cache: a new one per start, so a second start cannot be served from
// the first one's blocks.
func (e *env) newCache(t *testing.T) *cache.Cache {
	t.Helper()
	c, err := cache.New(e.client, cache.Options{
		BlockSize: testBlock, MinRequestSize: testBlock, MaxRequestSize: 4 * testBlock, Parallel: 8,
		Retry:  cache.RetryPolicy{Attempts: 3, Initial: time.Millisecond, Max: 10 * time.Millisecond},
		Logger: e.log,
	})
	if err != nil {
		t.Fatalf("cache: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// start starts a Downloader over e with o (Client, Cache, Dir, Poll and Logger filled in when unset).
// It is closed in t.Cleanup.
func (e *env) start(t *testing.T, o Options, setup ...func(*Downloader)) *Downloader {
	t.Helper()
	if o.Client == nil {
		o.Client = e.client
	}
	if o.Cache == nil {
		o.Cache = e.newCache(t)
	}
	if o.Dir == "" {
		o.Dir = e.dir
	}
	if o.Poll == 0 {
		o.Poll = 20 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = e.log
	}
	d, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range setup {
		f(d)
	}
	if err := d.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func (e *env) addJob(t *testing.T, spec emulator.JobSpec) emulator.Job {
	t.Helper()
	j, err := e.emu.AddJob(spec)
	if err != nil {
		t.Fatalf("add job: %v", err)
	}
	return j
}

// waitFor polls cond until it holds, failing the test after a generous deadline (never a timing
// assertion: only a guard against hanging).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// jobStatus returns job id's entry of d's snapshot.
func jobStatus(d *Downloader, id string) (JobStatus, bool) {
	for _, j := range d.Snapshot().Jobs {
		if j.ID == id {
			return j, true
		}
	}
	return JobStatus{}, false
}

func waitDone(t *testing.T, d *Downloader, id string) JobStatus {
	t.Helper()
	var js JobStatus
	waitFor(t, "job "+id+" downloaded", func() bool {
		var ok bool
		js, ok = jobStatus(d, id)
		return ok && js.State == "done"
	})
	return js
}

// waitPolls waits until the emulator has answered n more job listings: n rounds of d went by.
func (e *env) waitPolls(t *testing.T, n int64) {
	t.Helper()
	from := e.emu.Counters().Requests[emulator.EndpointJobs]
	waitFor(t, "job listings", func() bool { return e.emu.Counters().Requests[emulator.EndpointJobs] >= from+n })
}

// checkFile says whether the downloaded file rel of job equals the emulator's plaintext of f.
func (e *env) checkFile(t *testing.T, jobID, rel string, f emulator.FileInfo) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(e.dir, jobID, filepath.FromSlash(rel)))
	if err != nil {
		t.Errorf("downloaded file: %v", err)
		return
	}
	rc, _, err := e.emu.Plaintext(f.ID)
	if err != nil {
		t.Fatalf("plaintext: %v", err)
	}
	defer rc.Close()
	h := sha512.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatalf("plaintext: %v", err)
	}
	want := hex.EncodeToString(h.Sum(nil))
	sum := sha512.Sum512(got)
	if hex.EncodeToString(sum[:]) != want || want != f.SHA512 {
		t.Errorf("%s/%s: %d bytes, sha512 differs from the emulator's plaintext (size %d)", jobID, rel, len(got), f.Size)
	}
}

// checkJob checks every file of j (those with names containing query) is downloaded byte-identical,
// and that nothing else but the record is in the job's folder.
func (e *env) checkJob(t *testing.T, j emulator.Job, query string) {
	t.Helper()
	want := map[string]bool{stateName: true}
	for _, f := range j.Files {
		if strings.Contains(f.Name, query) {
			e.checkFile(t, j.ID, f.RelativePath, f)
			want[f.RelativePath] = true
		}
	}
	root := filepath.Join(e.dir, j.ID)
	filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if !want[filepath.ToSlash(rel)] {
			t.Errorf("unexpected file %s in the job's folder", rel)
		}
		return nil
	})
}

func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

func textFile(rel string, b []byte) emulator.FileSpec {
	return emulator.FileSpec{RelativePath: rel, Size: int64(len(b)), Content: bytes.NewReader(b)}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
