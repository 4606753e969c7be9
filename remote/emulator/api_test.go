package emulator

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPagination2500Files(t *testing.T) {
	h := newHarness(t, Options{})
	specs := make([]FileSpec, 2499)
	for i := range specs {
		specs[i] = FileSpec{RelativePath: fmt.Sprintf("out/d%02d/f%04d.dat", i/100, i), Size: 10}
	}
	j := mustAddJob(t, h.e, JobSpec{Name: "many", Files: specs})

	var p pageOf[fileJSON]
	h.getJSON("/api/v2/jobs/"+j.ID+"/files/?page_size=1000&search=f", &p)
	if p.Count != 2499 || len(p.Results) != 1000 || p.Previous != nil || p.Next == nil {
		t.Fatalf("first page: count %d, %d results, prev %v, next %v", p.Count, len(p.Results), p.Previous, p.Next)
	}
	next, err := url.Parse(*p.Next)
	if err != nil || !next.IsAbs() || next.Query().Get("search") != "f" || next.Query().Get("page_size") != "1000" || next.Query().Get("page") != "2" {
		t.Fatalf("next link %q: not absolute or lost the query", *p.Next)
	}
	files := all[fileJSON](h, "/api/v2/jobs/"+j.ID+"/files/?page_size=1000")
	if len(files) != 2500 { // with process_output.log
		t.Fatalf("got %d files, want 2500", len(files))
	}
	seen := map[string]bool{}
	for _, f := range files {
		seen[f.ID] = true
	}
	if len(seen) != 2500 {
		t.Fatalf("%d distinct ids", len(seen))
	}
	// Default page size 25, cap 1000, bad page 404.
	h.getJSON("/api/v2/jobs/"+j.ID+"/files", &p)
	if len(p.Results) != defaultPageSize {
		t.Fatalf("default page size: %d", len(p.Results))
	}
	h.getJSON("/api/v2/jobs/"+j.ID+"/files/?page_size=5000", &p)
	if len(p.Results) != maxPageSize {
		t.Fatalf("page size cap: %d", len(p.Results))
	}
	if resp, b := h.do(http.MethodGet, "/api/v2/jobs/"+j.ID+"/files/?page=1000", nil); resp.StatusCode != 404 || !strings.Contains(string(b), "Invalid page.") {
		t.Fatalf("page past the end: %d %s", resp.StatusCode, b)
	}
	// Previous of page 2 drops the page parameter, like DRF.
	h.getJSON("/api/v2/jobs/"+j.ID+"/files/?page_size=1000&page=2", &p)
	if p.Previous == nil || strings.Contains(*p.Previous, "page=") || !strings.Contains(*p.Previous, "page_size=1000") {
		t.Fatalf("previous: %v", p.Previous)
	}
}

func TestSearchIsCaseSensitiveSubstringOfName(t *testing.T) {
	h := newHarness(t, Options{})
	j := mustAddJob(t, h.e, JobSpec{Files: []FileSpec{{RelativePath: "a/Results.csv", Size: 1}, {RelativePath: "results/x.csv", Size: 1}}})
	files := all[fileJSON](h, "/api/v2/jobs/"+j.ID+"/files/?search=Res")
	if len(files) != 1 || files[0].Name != "Results.csv" {
		t.Fatalf("search=Res: %+v", files)
	}
	files = all[fileJSON](h, "/api/v2/jobs/"+j.ID+"/runs/1/files/?search=.csv")
	if len(files) != 2 {
		t.Fatalf("run files search=.csv: %d", len(files))
	}
}

func TestRangeEdgeCases(t *testing.T) {
	h := newHarness(t, Options{})
	const size = 1000 // not a multiple of 16
	j := mustAddJob(t, h.e, JobSpec{Files: []FileSpec{{RelativePath: "r.bin", Size: size}, {RelativePath: "empty", Size: 0}}})
	id := j.Files[0].ID
	plain := plaintext(t, h.e, id)
	if len(plain) != size {
		t.Fatalf("plaintext %d bytes", len(plain))
	}
	sum := sha512.Sum512(plain)
	if hex.EncodeToString(sum[:]) != j.Files[0].SHA512 {
		t.Fatal("sha512 of plaintext differs from fileChecksums")
	}
	tests := []struct {
		name, rng  string
		status     int
		start, end int // inclusive, for 206
	}{
		{"whole file, no range", "", 200, 0, size - 1},
		{"first byte", "bytes=0-0", 206, 0, 0},
		{"last byte", "bytes=999-999", 206, 999, 999},
		{"suffix", "bytes=-10", 206, 990, 999},
		{"open end", "bytes=990-", 206, 990, 999},
		{"end clamped", "bytes=900-5000", 206, 900, 999},
		{"block boundary 15-16", "bytes=15-16", 206, 15, 16},
		{"across blocks", "bytes=17-100", 206, 17, 100},
		{"aligned block", "bytes=32-47", 206, 32, 47},
		{"last partial block", "bytes=992-999", 206, 992, 999},
		{"start past EOF", "bytes=1000-1005", 416, 0, 0},
		{"way past EOF", "bytes=5000-", 416, 0, 0},
		{"multi-range ignored", "bytes=0-1,5-6", 200, 0, size - 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hdr []string
			if tc.rng != "" {
				hdr = []string{"Range", tc.rng}
			}
			resp, b := h.do(http.MethodGet, "/api/v2/files/"+id+"/contents/", nil, hdr...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tc.status, b)
			}
			if resp.Header.Get("Accept-Ranges") != "bytes" {
				t.Error("no Accept-Ranges")
			}
			switch tc.status {
			case 416:
				if cr := resp.Header.Get("Content-Range"); cr != "bytes */1000" {
					t.Errorf("Content-Range %q", cr)
				}
				return
			case 206:
				if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes %d-%d/%d", tc.start, tc.end, size) {
					t.Errorf("Content-Range %q", cr)
				}
			}
			want := plain[tc.start : tc.end+1]
			if !bytes.Equal(b, want) || resp.Header.Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Fatalf("got %d bytes (Content-Length %s), want %d equal to the plaintext", len(b), resp.Header.Get("Content-Length"), len(want))
			}
		})
	}
	// Every range of a small stored (not generated) file, to cover the blob path too.
	lib, err := h.e.AddLibraryFile("text.txt", strings.NewReader(strings.Repeat("0123456789abcdef!", 5)), -1)
	if err != nil {
		t.Fatal(err)
	}
	lp := plaintext(t, h.e, lib.ID)
	for a := 0; a < len(lp); a += 7 {
		for b := a; b < len(lp)+3; b += 5 {
			_, got := h.do(http.MethodGet, "/api/v2/files/"+lib.ID+"/contents/", nil, "Range", fmt.Sprintf("bytes=%d-%d", a, b))
			if !bytes.Equal(got, lp[a:min(b+1, len(lp))]) {
				t.Fatalf("range %d-%d wrong", a, b)
			}
		}
	}
	// Empty file: 200 with nothing, any range 416.
	if resp, b := h.do(http.MethodGet, "/api/v2/files/"+j.Files[1].ID+"/contents/", nil); resp.StatusCode != 200 || len(b) != 0 {
		t.Fatalf("empty file: %d, %d bytes", resp.StatusCode, len(b))
	}
	if resp, _ := h.do(http.MethodGet, "/api/v2/files/"+j.Files[1].ID+"/contents/", nil, "Range", "bytes=0-0"); resp.StatusCode != 416 {
		t.Fatalf("empty file range: %d", resp.StatusCode)
	}
}

func TestAuth(t *testing.T) {
	h := newHarness(t, Options{APIKey: "secret-key"})
	for _, tc := range []struct {
		name, auth string
		status     int
		detail     string
	}{
		{"no header", "", 401, "Authentication credentials were not provided."},
		{"wrong key", "Token nope", 401, "Invalid token."},
		{"wrong scheme", "Basic secret-key", 401, "Invalid token."},
		{"token", "Token secret-key", 200, ""},
		{"bearer", "Bearer secret-key", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, h.srv.URL+"/api/v2/jobs/", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body map[string]any
			json.NewDecoder(resp.Body).Decode(&body)
			if resp.StatusCode != tc.status || (tc.detail != "" && body["detail"] != tc.detail) {
				t.Fatalf("%d %v", resp.StatusCode, body)
			}
		})
	}
	h.e.SetKeyRevoked(true)
	if resp, _ := h.do(http.MethodGet, "/api/v2/jobs", nil); resp.StatusCode != 401 {
		t.Fatalf("revoked key: %d", resp.StatusCode)
	}
	h.e.SetKeyRevoked(false)
	if resp, _ := h.do(http.MethodGet, "/api/v2/jobs", nil); resp.StatusCode != 200 {
		t.Fatalf("key valid again: %d", resp.StatusCode)
	}
}

func TestThrottleRetryAfter(t *testing.T) {
	h := newHarness(t, Options{Limits: map[string]int{ScopeJobsUsage: 3}})
	for i := range 3 {
		if resp, _ := h.do(http.MethodGet, "/api/v2/jobs/", nil); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	resp, b := h.do(http.MethodGet, "/api/v2/jobs/", nil)
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 429 || err != nil || ra < 1 {
		t.Fatalf("over the limit: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if want := fmt.Sprintf(`{"detail":"Request was throttled. Expected available in %d seconds."}`, ra); strings.TrimSpace(string(b)) != want {
		t.Fatalf("body %s, want %s", b, want)
	}
	// Other scopes are not affected; waiting Retry-After (on the injected clock) frees the scope.
	if resp, _ := h.do(http.MethodGet, "/api/v2/files/", nil); resp.StatusCode != 200 {
		t.Fatalf("file-access: %d", resp.StatusCode)
	}
	h.clock.Advance(time.Duration(ra) * time.Second)
	if resp, _ := h.do(http.MethodGet, "/api/v2/jobs/", nil); resp.StatusCode != 200 {
		t.Fatalf("after Retry-After: %d", resp.StatusCode)
	}
}

func TestFaults(t *testing.T) {
	h := newHarness(t, Options{})
	j := mustAddJob(t, h.e, JobSpec{Files: []FileSpec{{RelativePath: "big.bin", Size: 256 << 10}}})
	contents := "/api/v2/files/" + j.Files[0].ID + "/contents/"
	plain := plaintext(t, h.e, j.Files[0].ID)

	get := func() (*http.Response, []byte, error) {
		req, _ := http.NewRequest(http.MethodGet, h.srv.URL+contents, nil)
		req.Header.Set("Authorization", "Token "+h.e.APIKey())
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	t.Run("FailNext statuses", func(t *testing.T) {
		for _, f := range []Fault{Fault500, Fault503, Fault504} {
			h.e.FailNext(EndpointContents, 1, f)
			resp, _, err := get()
			if err != nil || strconv.Itoa(resp.StatusCode) != f.String() {
				t.Fatalf("%v: %v %v", f, resp.StatusCode, err)
			}
		}
		if resp, b, err := get(); err != nil || resp.StatusCode != 200 || !bytes.Equal(b, plain) {
			t.Fatal("request after the injected faults failed")
		}
	})
	t.Run("429", func(t *testing.T) {
		h.e.SetFaults(Faults{RetryAfter: 3 * time.Second})
		h.e.FailNext(EndpointContents, 1, Fault429)
		resp, _, err := get()
		if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("cut", func(t *testing.T) {
		h.e.FailNext(EndpointContents, 1, FaultCut)
		resp, b, err := get()
		if err == nil {
			t.Fatalf("cut body read without error: %d, %d bytes", resp.StatusCode, len(b))
		}
	})
	t.Run("short", func(t *testing.T) {
		h.e.FailNext(EndpointContents, 1, FaultShort)
		resp, b, err := get()
		if err == nil {
			t.Fatalf("short body read without error: %d, %d bytes", resp.StatusCode, len(b))
		}
		if resp, b, err := get(); err != nil || !bytes.Equal(b, plain) {
			t.Fatalf("after short body: %v %v", resp, err)
		}
	})
	t.Run("rates are deterministic", func(t *testing.T) {
		run := func() []int {
			h.e.SetFaults(Faults{ErrorRate: 0.3, ThrottleRate: 0.2, Seed: 42, Endpoints: []string{EndpointJobs}})
			var out []int
			for range 30 {
				resp, _ := h.do(http.MethodGet, "/api/v2/jobs/", nil)
				out = append(out, resp.StatusCode)
			}
			return out
		}
		a, b := run(), run()
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
		}
		bad := 0
		for _, s := range a {
			if s != 200 {
				bad++
			}
		}
		if bad == 0 || bad == len(a) {
			t.Fatalf("rates not applied: %v", a)
		}
		h.e.SetFaults(Faults{})
	})
	t.Run("latency and bandwidth", func(t *testing.T) {
		h.e.SetFaults(Faults{Latency: 50 * time.Millisecond, Bandwidth: 1 << 20})
		start := time.Now()
		_, b, err := get()
		// Lower bounds only: 50 ms latency, then 256 KiB at 1 MiB/s takes at least 250 ms.
		if err != nil || !bytes.Equal(b, plain) || time.Since(start) < 250*time.Millisecond {
			t.Fatalf("err %v, equal %v, took %v", err, bytes.Equal(b, plain), time.Since(start))
		}
		h.e.SetFaults(Faults{})
	})
	c := h.e.Counters()
	for _, k := range []string{"500", "503", "504", "429", "cut", "short"} {
		if c.Faults[k] == 0 {
			t.Errorf("fault %s not counted: %v", k, c.Faults)
		}
	}
}

func TestCounters(t *testing.T) {
	h := newHarness(t, Options{})
	j := mustAddJob(t, h.e, JobSpec{Files: []FileSpec{{RelativePath: "x", Size: 1000}}})
	h.e.ResetCounters()
	h.do(http.MethodGet, "/api/v2/files/"+j.Files[0].ID+"/contents/", nil, "Range", "bytes=0-99")
	h.do(http.MethodGet, "/api/v2/files/"+j.Files[0].ID+"/contents/", nil, "Range", "bytes=100-299")
	h.do(http.MethodGet, "/api/v2/jobs/"+j.ID+"/statuses", nil)
	c := h.e.Counters()
	if c.Requests[EndpointContents] != 2 || c.BytesOut[EndpointContents] != 300 || c.Statuses[EndpointContents][206] != 2 ||
		c.Requests[EndpointStatuses] != 1 || c.Total() != 3 {
		t.Fatalf("counters: %+v", c)
	}
	var stats Counters
	h.getJSON("/_emulator/stats", &stats)
	if stats.Requests[EndpointContents] != 2 {
		t.Fatalf("stats endpoint: %+v", stats)
	}
	h.e.ResetCounters()
	if h.e.Counters().Total() != 0 {
		t.Fatal("reset")
	}
}

// TestCountersHoldWhatTheClientHas: once a client has a whole answer, the counters hold it: the
// request, its status and its bytes. A paced answer keeps its handler running after the last byte is
// out (it sleeps off the bandwidth cap), so counters added when the handler returns showed nothing yet
// to a client holding the whole body (tests asserting counters right after a call read 0 requests).
func TestCountersHoldWhatTheClientHas(t *testing.T) {
	h := newHarness(t, Options{})
	j := mustAddJob(t, h.e, JobSpec{Files: []FileSpec{{RelativePath: "x", Size: 4096}}})
	h.e.ResetCounters()
	h.e.SetFaults(Faults{Bandwidth: 4096}) // one 4 KiB write, then a second of pacing in the handler
	resp, b := h.do(http.MethodGet, "/api/v2/files/"+j.Files[0].ID+"/contents/", nil)
	c := h.e.Counters()
	if resp.StatusCode != 200 || len(b) != 4096 {
		t.Fatalf("answer %d, %d bytes", resp.StatusCode, len(b))
	}
	if c.Requests[EndpointContents] != 1 || c.Statuses[EndpointContents][200] != 1 || c.BytesOut[EndpointContents] != 4096 {
		t.Fatalf("the client has the whole answer, the counters say %d requests, statuses %v, %d bytes",
			c.Requests[EndpointContents], c.Statuses[EndpointContents], c.BytesOut[EndpointContents])
	}
}

func TestLifecycleWithInjectedClock(t *testing.T) {
	lc := Lifecycle{Pending: time.Second, Queued: time.Second, Started: time.Second, Validated: time.Second,
		Executing: 100 * time.Second, Stopping: 2 * time.Second}
	h := newHarness(t, Options{Lifecycle: lc})
	statuses := func(id string) []statusJSON { return all[statusJSON](h, "/api/v2/jobs/"+id+"/statuses/") }

	// A job created and submitted through the API.
	resp, b := h.do(http.MethodPost, "/api/v2/jobs/", strings.NewReader(`{"name": "api job", "jobanalyses": [{"analysis": {"code": "openfoam"}, "hardware": {"coreType": "emerald"}, "command": "./run.sh"}]}`))
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, b)
	}
	var created jobDetailJSON
	json.Unmarshal(b, &created)
	if st := statuses(created.ID); len(st) != 1 || st[0].Status != StatusPending {
		t.Fatalf("created: %+v", st)
	}
	if resp, _ := h.do(http.MethodPost, "/api/v2/jobs/"+created.ID+"/submit/", nil); resp.StatusCode != 200 {
		t.Fatalf("submit: %d", resp.StatusCode)
	}
	h.clock.Advance(4*time.Second + 50*time.Second)
	st := statuses(created.ID)
	if st[0].Status != StatusExecuting || st[len(st)-1].Status != StatusPending {
		t.Fatalf("mid-run statuses (newest first): %+v", st)
	}
	// Live working directory while executing.
	var dir []directoryEntryJSON
	h.getJSON("/api/v2/jobs/"+created.ID+"/runs/1/directory-contents/", &dir)
	var logSize int64 = -1
	for _, d := range dir {
		if d.Path == processOutputLog {
			logSize = d.Size
		}
	}
	if logSize <= 0 {
		t.Fatalf("no growing process_output.log: %+v", dir)
	}
	resp, tail := h.do(http.MethodGet, "/api/v2/jobs/"+created.ID+"/runs/1/tail/"+processOutputLog, nil)
	if resp.StatusCode != 200 || int64(len(tail)) != logSize {
		t.Fatalf("tail: %d, %d bytes, want %d", resp.StatusCode, len(tail), logSize)
	}
	var lines struct {
		Lines []string `json:"lines"`
	}
	h.getJSON("/api/v2/jobs/"+created.ID+"/runs/1/tail/"+processOutputLog+"?lines=3", &lines)
	if len(lines.Lines) != 3 {
		t.Fatalf("tail lines: %+v", lines)
	}
	if files := all[fileJSON](h, "/api/v2/jobs/"+created.ID+"/files/"); len(files) != 0 {
		t.Fatalf("outputs listed before completion: %d", len(files))
	}
	h.clock.Advance(10 * time.Second)
	var dir2 []directoryEntryJSON
	h.getJSON("/api/v2/jobs/"+created.ID+"/runs/1/directory-contents/", &dir2)
	if len(dir2) < len(dir) {
		t.Fatal("live directory shrank")
	}

	h.clock.Advance(60 * time.Second)
	st = statuses(created.ID)
	if st[0].Status != StatusCompleted || st[0].StatusReason == nil || *st[0].StatusReason != ReasonSucceeded {
		t.Fatalf("completed: %+v", st[0])
	}
	if resp, _ := h.do(http.MethodGet, "/api/v2/jobs/"+created.ID+"/runs/1/directory-contents/", nil); resp.StatusCode != liveGoneStatus {
		t.Fatalf("directory-contents after completion: %d", resp.StatusCode)
	}
	files := all[fileJSON](h, "/api/v2/jobs/"+created.ID+"/files/")
	if len(files) == 0 {
		t.Fatal("no outputs after completion")
	}
	for _, f := range files {
		if f.TypeID != TypeOutput || !f.IsUploaded || f.IsDeleted {
			t.Fatalf("output %+v", f)
		}
	}
	var runs []runJSON
	runs = all[runJSON](h, "/api/v2/jobs/"+created.ID+"/runs/")
	if len(runs) != 1 || runs[0].DateCompleted == nil || runs[0].OutputFileCount != len(files) {
		t.Fatalf("runs: %+v", runs)
	}

	// A failing job goes through Stopping; CompleteJob forces completion.
	fj := mustAddJob(t, h.e, JobSpec{Name: "fails", RunFor: time.Hour, Fail: true})
	if st := statuses(fj.ID); st[0].Status == StatusCompleted {
		t.Fatal("running job completed already")
	}
	if err := h.e.CompleteJob(fj.ID); err != nil {
		t.Fatal(err)
	}
	st = statuses(fj.ID)
	if st[0].Status != StatusCompleted || *st[0].StatusReason != ReasonRunFailed || st[1].Status != StatusStopping {
		t.Fatalf("failed job statuses: %+v", st)
	}
	var list []jobListItemJSON
	list = all[jobListItemJSON](h, "/api/v2/jobs/?state=completed")
	if len(list) != 2 {
		t.Fatalf("completed jobs: %+v", list)
	}
	// Job detail has no jobStatus; GET works without the trailing slash.
	_, raw := h.do(http.MethodGet, "/api/v2/jobs/"+fj.ID, nil)
	if strings.Contains(string(raw), "jobStatus") || !strings.Contains(string(raw), `"jobanalyses"`) {
		t.Fatalf("detail: %s", raw)
	}
	// Stop.
	sj := mustAddJob(t, h.e, JobSpec{Name: "stopped", RunFor: time.Hour})
	if resp, _ := h.do(http.MethodPost, "/api/v2/jobs/"+sj.ID+"/stop/", nil); resp.StatusCode != 202 {
		t.Fatal("stop")
	}
	h.clock.Advance(time.Minute)
	if st := statuses(sj.ID); st[0].Status != StatusCompleted || *st[0].StatusReason != ReasonUserStopped {
		t.Fatalf("stopped: %+v", st)
	}
	if resp, _ := h.do(http.MethodDelete, "/api/v2/jobs/"+sj.ID+"/", nil); resp.StatusCode != 204 {
		t.Fatal("delete")
	}
	if resp, _ := h.do(http.MethodGet, "/api/v2/jobs/"+sj.ID+"/", nil); resp.StatusCode != 404 {
		t.Fatal("deleted job still there")
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e1, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := e1.Seed(SampleOptions{LargeFileSize: 100 << 10, ManyFiles: 50}); err != nil {
		t.Fatal(err)
	}
	lib, err := e1.AddLibraryFile("note.txt", strings.NewReader("hello"), 5)
	if err != nil {
		t.Fatal(err)
	}
	key := e1.APIKey()
	e1.Close()

	h := newHarness(t, Options{DataDir: dir, Now: time.Now})
	if h.e.APIKey() != key {
		t.Fatal("API key not kept")
	}
	if got := plaintext(t, h.e, lib.ID); string(got) != "hello" {
		t.Fatalf("library file after restart: %q", got)
	}
	jobs := all[jobListItemJSON](h, "/api/v2/jobs/")
	if len(jobs) != 8 {
		t.Fatalf("%d jobs after restart", len(jobs))
	}
	// Seeding again adds nothing.
	if err := h.e.Seed(SampleOptions{LargeFileSize: 100 << 10, ManyFiles: 50}); err != nil {
		t.Fatal(err)
	}
	if n := len(all[jobListItemJSON](h, "/api/v2/jobs/")); n != 8 {
		t.Fatalf("%d jobs after reseeding", n)
	}
	files := all[fileJSON](h, "/api/v2/files/?search=note")
	if len(files) != 1 || files[0].FileChecksums[0].FileHash != lib.SHA512 {
		t.Fatalf("library: %+v", files)
	}
}

func TestSmallUploadAndLines(t *testing.T) {
	h := newHarness(t, Options{})
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("typeId", "1")
	fw, _ := mw.CreateFormFile("file", "input deck.txt")
	io.WriteString(fw, "line one\nline two\nlast")
	mw.Close()
	resp, b := h.do(http.MethodPost, "/api/v2/files/contents/", bytes.NewReader(body.Bytes()), "Content-Type", mw.FormDataContentType())
	if resp.StatusCode != 201 {
		t.Fatalf("upload: %d %s", resp.StatusCode, b)
	}
	var f fileJSON
	json.Unmarshal(b, &f)
	if f.Name != "input deck.txt" || f.DecryptedSize != 22 || f.TypeID != 1 {
		t.Fatalf("%+v", f)
	}
	var lines struct{ Lines []string }
	h.getJSON("/api/v2/files/"+f.ID+"/lines/", &lines)
	if strings.Join(lines.Lines, "|") != "line one\n|line two\n|last" {
		t.Fatalf("lines: %q", lines.Lines)
	}
	// Chunked bodies are refused.
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+"/api/v2/files/contents/", io.MultiReader(bytes.NewReader(body.Bytes())))
	req.Header.Set("Authorization", "Token "+h.e.APIKey())
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != chunkedUploadStatus {
		t.Fatalf("chunked upload: %d", resp2.StatusCode)
	}
	if resp, _ := h.do(http.MethodDelete, "/api/v2/files/"+f.ID+"/", nil); resp.StatusCode != 204 {
		t.Fatal("delete file")
	}
	if resp, _ := h.do(http.MethodGet, "/api/v2/files/"+f.ID+"/contents/", nil); resp.StatusCode != 404 {
		t.Fatal("contents of a deleted file")
	}
}

func TestPublishDirectory(t *testing.T) {
	h := newHarness(t, Options{})
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sub dir", "ü"), 0o755)
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("alpha"), 0o644)
	os.WriteFile(filepath.Join(dir, "sub dir", "ü", "b.dat"), bytes.Repeat([]byte{7}, 5000), 0o644)
	resp, b := h.do(http.MethodPost, "/_emulator/publish", strings.NewReader(fmt.Sprintf(`{"name": "published", "dir": %q}`, dir)))
	if resp.StatusCode != 201 {
		t.Fatalf("publish: %d %s", resp.StatusCode, b)
	}
	var out AdminJobResponse
	json.Unmarshal(b, &out)
	files := all[fileJSON](h, "/api/v2/jobs/"+out.ID+"/files/")
	got := map[string]int64{}
	for _, f := range files {
		got[f.RelativePath] = f.DecryptedSize
	}
	if got["a.txt"] != 5 || got["sub dir/ü/b.dat"] != 5000 || len(got) != 3 {
		t.Fatalf("published files: %v", got)
	}
	resp, b = h.do(http.MethodPost, "/_emulator/jobs", strings.NewReader(`{"name": "runs 2m", "duration": "2m"}`))
	if resp.StatusCode != 201 {
		t.Fatalf("add job: %d %s", resp.StatusCode, b)
	}
	json.Unmarshal(b, &out)
	var st pageOf[statusJSON]
	h.getJSON("/api/v2/jobs/"+out.ID+"/statuses/", &st)
	if st.Results[0].Status == StatusCompleted {
		t.Fatal("added job already completed")
	}
	h.clock.Advance(2 * time.Minute)
	h.getJSON("/api/v2/jobs/"+out.ID+"/statuses/", &st)
	if st.Results[0].Status != StatusCompleted {
		t.Fatalf("after 2m: %+v", st.Results[0])
	}
}

func TestSeedTenThousandFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	h := newHarness(t, Options{})
	if err := h.e.Seed(SampleOptions{LargeFileSize: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, j := range all[jobListItemJSON](h, "/api/v2/jobs/?page_size=1000") {
		var p pageOf[fileJSON]
		h.getJSON("/api/v2/jobs/"+j.ID+"/files/?page_size=1", &p)
		if p.Count == 10000 {
			found = true
		}
	}
	if !found {
		t.Fatal("no job with 10,000 files")
	}
}

// TestPublishedLimitsByDefault: an emulator made with no Limits enforces the platform's published ones
// (the user scope's 7200 an hour here: the 7201st request is throttled), and NoLimits turns them off.
func TestPublishedLimitsByDefault(t *testing.T) {
	for _, tc := range []struct {
		opts      Options
		throttled bool
	}{{Options{}, true}, {Options{NoLimits: true}, false}, {Options{NoLimits: true, Limits: map[string]int{ScopeUser: 10}}, false}} {
		h := newHarness(t, tc.opts)
		status := 0
		for range DefaultLimits[ScopeUser] + 1 {
			req := httptest.NewRequest(http.MethodGet, "/api/v3/users/me/", nil)
			req.Header.Set("Authorization", "Token "+h.e.APIKey())
			rec := httptest.NewRecorder()
			h.e.ServeHTTP(rec, req)
			if status = rec.Code; status != http.StatusOK {
				break
			}
		}
		if got := status == http.StatusTooManyRequests; got != tc.throttled {
			t.Errorf("NoLimits %v, Limits %v: request %d of the hour answered %d", tc.opts.NoLimits, tc.opts.Limits,
				DefaultLimits[ScopeUser]+1, status)
		}
	}
}
