package remote

// The client against the real emulator over HTTP (httptest on loopback). The emulator and the client
// share one fake clock: the client's Sleep moves it, so Retry-After waits and throttle pacing are
// asserted through recorded durations and the emulator's counters, never wall time.

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

type env struct {
	t   *testing.T
	e   *emulator.Emulator
	srv *httptest.Server
	c   *Client
	clk *fakeClock
}

func newEnv(t *testing.T, eo emulator.Options, tweak func(*Options)) *env {
	t.Helper()
	clk := newFakeClock()
	eo.Now = clk.Now
	e, err := emulator.New(eo)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		srv.Close()
		e.Close()
	})
	o := Options{BaseURL: srv.URL + "/", APIKey: e.APIKey(), Sleep: clk.Sleep, Now: clk.Now}
	if tweak != nil {
		tweak(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, e: e, srv: srv, c: c, clk: clk}
}

func (v *env) plaintext(id string) []byte {
	v.t.Helper()
	rc, _, err := v.e.Plaintext(id)
	if err != nil {
		v.t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		v.t.Fatal(err)
	}
	return b
}

// requests is the emulator's request count for endpoint. The emulator counts a request on arrival,
// before its handler runs, so every request the client has had an answer to (or given up on after
// it arrived) is counted already: there is nothing to wait for.
func (v *env) requests(endpoint string) int64 { return v.e.Counters().Requests[endpoint] }

func (v *env) job(spec emulator.JobSpec) emulator.Job {
	v.t.Helper()
	j, err := v.e.AddJob(spec)
	if err != nil {
		v.t.Fatal(err)
	}
	return j
}

func TestEmuPaging2500(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	specs := make([]emulator.FileSpec, 2500)
	for i := range specs {
		specs[i] = emulator.FileSpec{RelativePath: fmt.Sprintf("case/%d/out_%04d.dat", i%10, i), Size: int64(i % 50)}
	}
	j := v.job(emulator.JobSpec{Name: "many files", Files: specs})
	for range 3 {
		v.job(emulator.JobSpec{})
	}
	ctx := context.Background()
	v.e.ResetCounters()

	files, err := v.c.JobFiles(ctx, j.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2501 { // and process_output.log
		t.Fatalf("%d files", len(files))
	}
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f.ID] {
			t.Fatalf("file %s twice", f.ID)
		}
		seen[f.ID] = true
		if f.TypeID != TypeOutput || f.SHA512() == "" || f.DateUploaded.IsZero() || f.Storage.StorageType == "" {
			t.Fatalf("file %+v", f)
		}
	}
	if n := v.e.Counters().Requests[emulator.EndpointJobFiles]; n != 3 {
		t.Errorf("%d requests for 2501 files at page_size %d, want 3", n, PageSize)
	}
	runFiles, err := v.c.RunFiles(ctx, j.ID, "1", "")
	if err != nil || len(runFiles) != 2501 {
		t.Errorf("run files: %d %v", len(runFiles), err)
	}
	found, err := v.c.JobFiles(ctx, j.ID, "out_0042")
	if err != nil || len(found) == 0 || !strings.Contains(found[0].Name, "out_0042") {
		t.Errorf("search: %v %v", found, err)
	}
	jobs, err := v.c.ListJobs(ctx, nil)
	if err != nil || len(jobs) != 4 {
		t.Errorf("jobs: %d %v", len(jobs), err)
	}
	job, err := v.c.GetJob(ctx, j.ID)
	if err != nil || job.ID != j.ID || job.Name != "many files" {
		t.Errorf("job %+v %v", job, err)
	}
	if _, err := v.c.GetJob(ctx, "nope0"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing job: %v", err)
	}
}

func TestEmuReadRangeEdges(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	sizes := []int64{0, 1, 15, 16, 17, 31, 32, 33, 4096, 100003}
	var specs []emulator.FileSpec
	for _, n := range sizes {
		specs = append(specs, emulator.FileSpec{RelativePath: fmt.Sprintf("f%d.bin", n), Size: n})
	}
	j := v.job(emulator.JobSpec{Files: specs})
	ctx := context.Background()
	files, err := v.c.JobFiles(ctx, j.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range files {
		if !strings.HasPrefix(f.Name, "f") {
			continue
		}
		plain := v.plaintext(f.ID)
		size := int64(len(plain))
		if size != f.DecryptedSize {
			t.Fatalf("%s: plaintext %d bytes, decryptedSize %d", f.Name, size, f.DecryptedSize)
		}
		type rg struct{ off, n int64 }
		cases := []rg{{0, 0}, {size, 0}}
		if size > 0 {
			cases = append(cases, rg{0, 1}, rg{size - 1, 1}, rg{0, size})
			for _, b := range []int64{15, 16, 31, 32, 4095, 65536} {
				if b+2 <= size {
					cases = append(cases, rg{b - 1, 3}, rg{b, size - b}, rg{b - 15, 17})
				}
			}
			for range 20 {
				off := rng.Int64N(size)
				cases = append(cases, rg{off, 1 + rng.Int64N(size-off)})
			}
		}
		for _, c := range cases {
			p := make([]byte, c.n)
			if err := v.c.ReadRange(ctx, f.ID, c.off, p); err != nil {
				t.Fatalf("%s [%d,+%d): %v", f.Name, c.off, c.n, err)
			}
			if !bytes.Equal(p, plain[c.off:c.off+c.n]) {
				t.Fatalf("%s [%d,+%d): wrong bytes", f.Name, c.off, c.n)
			}
		}
		// Past EOF: a start at the end is 416; a range running over the end is short, never data.
		if err := v.c.ReadRange(ctx, f.ID, size, make([]byte, 1)); !errors.Is(err, ErrRange) {
			t.Errorf("%s: start at EOF: %v", f.Name, err)
		}
		if err := v.c.ReadRange(ctx, f.ID, size+100, make([]byte, 10)); !errors.Is(err, ErrRange) {
			t.Errorf("%s: start past EOF: %v", f.Name, err)
		}
		if size > 0 {
			if err := v.c.ReadRange(ctx, f.ID, size-1, make([]byte, 2)); !errors.Is(err, ErrShortBody) {
				t.Errorf("%s: over the end: %v", f.Name, err)
			}
		}
		// sha512 of a whole read is the platform's checksum.
		whole := make([]byte, size)
		if err := v.c.ReadRange(ctx, f.ID, 0, whole); err != nil {
			t.Fatal(err)
		}
		sum := sha512.Sum512(whole)
		if hex.EncodeToString(sum[:]) != f.SHA512() {
			t.Errorf("%s: sha512 differs from fileChecksums", f.Name)
		}
		// The streaming variant agrees.
		if size > 0 {
			rc, err := v.c.OpenRange(ctx, f.ID, 0, -1)
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(b, plain) {
				t.Errorf("%s: OpenRange whole: %v", f.Name, err)
			}
			off := size / 3
			rc, err = v.c.OpenRange(ctx, f.ID, off, size-off)
			if err != nil {
				t.Fatal(err)
			}
			b, err = io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(b, plain[off:]) {
				t.Errorf("%s: OpenRange tail: %v", f.Name, err)
			}
		}
	}
	if err := v.c.ReadRange(ctx, "nope00", 0, make([]byte, 1)); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
}

func TestEmu429RetryAfterWaitedOut(t *testing.T) {
	v := newEnv(t, emulator.Options{Faults: emulator.Faults{RetryAfter: 7 * time.Second}}, nil)
	j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "a.bin", Size: 1000}}})
	ctx := context.Background()
	files, err := v.c.JobFiles(ctx, j.ID, "a.bin")
	if err != nil || len(files) != 1 {
		t.Fatal(files, err)
	}
	plain := v.plaintext(files[0].ID)
	v.e.ResetCounters()
	v.e.FailNext(emulator.EndpointContents, 2, emulator.Fault429)
	p := make([]byte, 100)
	if err := v.c.ReadRange(ctx, files[0].ID, 50, p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(p, plain[50:150]) {
		t.Fatal("wrong bytes after 429s")
	}
	st := v.e.Counters().Statuses[emulator.EndpointContents]
	if st[429] != 2 || st[206] != 1 {
		t.Errorf("statuses %v", st)
	}
	if s := v.clk.Sleeps(); len(s) != 2 || s[0] != 7*time.Second || s[1] != 7*time.Second {
		t.Errorf("sleeps %v, want the Retry-After twice", s)
	}

	// A POST is retried on 429 too: the platform did not take it.
	v.e.ResetCounters()
	v.e.FailNext(emulator.EndpointUpload, 1, emulator.Fault429)
	if _, err := v.c.UploadSmall(ctx, "after429.txt", strings.NewReader("hello"), 5, TypeInput); err != nil {
		t.Fatal(err)
	}
	if st := v.e.Counters().Statuses[emulator.EndpointUpload]; st[429] != 1 || st[201] != 1 {
		t.Errorf("upload statuses %v", st)
	}

	// Still throttled after every attempt: ErrThrottled.
	v.e.FailNext(emulator.EndpointFile, DefaultMaxAttempts, emulator.Fault429)
	if _, err := v.c.GetFile(ctx, files[0].ID); !errors.Is(err, ErrThrottled) {
		t.Errorf("exhausted: %v", err)
	}
}

func TestEmuThrottleScopeHonoured(t *testing.T) {
	// The emulator enforces 120/h on file-access (Retry-After in the tens of seconds); a client that
	// does not know the limit gets 429s and waits them out; one that knows it never sees a 429.
	limits := map[string]int{emulator.ScopeFileAccess: 120}
	v := newEnv(t, emulator.Options{Limits: limits}, func(o *Options) {
		o.Limits = map[Scope]float64{} // unlimited on our side
		o.MaxRetryAfter = 2 * time.Hour
	})
	j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "a.bin", Size: 64}}})
	ctx := context.Background()
	files, err := v.c.JobFiles(ctx, j.ID, "a.bin")
	if err != nil {
		t.Fatal(err)
	}
	id := files[0].ID
	v.e.ResetCounters()
	for i := range 130 {
		if err := v.c.ReadRange(ctx, id, 0, make([]byte, 8)); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if n := v.e.Counters().Statuses[emulator.EndpointContents][429]; n == 0 {
		t.Error("expected the emulator to throttle an unpaced client")
	}
	var waited time.Duration
	for _, d := range v.clk.Sleeps() {
		if d < time.Second {
			t.Errorf("a 429 wait of %v: Retry-After not honoured", d)
		}
		waited += d
	}
	if waited < 50*time.Minute {
		t.Errorf("waited %v in all: the emulator's hour window was not waited out", waited)
	}

	w := newEnv(t, emulator.Options{Limits: limits}, func(o *Options) {
		o.Limits = map[Scope]float64{ScopeFileAccess: 120}
	})
	j = w.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "a.bin", Size: 64}}})
	files, err = w.c.JobFiles(ctx, j.ID, "a.bin")
	if err != nil {
		t.Fatal(err)
	}
	w.e.ResetCounters()
	for i := range 130 {
		if err := w.c.ReadRange(ctx, files[0].ID, 0, make([]byte, 8)); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	if st := w.e.Counters().Statuses[emulator.EndpointContents]; st[429] != 0 || st[206] != 130 {
		t.Errorf("paced client: statuses %v", st)
	}
}

func TestEmu500RetriedOnGetNotPost(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "a.bin", Size: 10}}})
	ctx := context.Background()
	files, err := v.c.JobFiles(ctx, j.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	v.e.ResetCounters()
	v.e.FailNext(emulator.EndpointFile, 1, emulator.Fault500)
	v.e.FailNext(emulator.EndpointFile, 1, emulator.Fault503)
	v.e.FailNext(emulator.EndpointFile, 1, emulator.Fault504)
	if _, err := v.c.GetFile(ctx, files[0].ID); err != nil {
		t.Fatal(err)
	}
	if n := v.e.Counters().Requests[emulator.EndpointFile]; n != 4 {
		t.Errorf("GET sent %d times, want 4", n)
	}
	// Exponential with jitter: retry i waits within [d/2, d], d = MinBackoff * 2^(i-1).
	s := v.clk.Sleeps()
	if len(s) != 3 {
		t.Fatalf("backoff sleeps %v", s)
	}
	for i, d := range s {
		if top := DefaultMinBackoff << i; d < top/2 || d > top {
			t.Errorf("backoff %d: %v outside [%v, %v]", i+1, d, top/2, top)
		}
	}

	v.e.FailNext(emulator.EndpointStatuses, 2, emulator.Fault504)
	st, err := v.c.JobStatuses(ctx, j.ID)
	if err != nil || !st.Completed() || !st.Succeeded() {
		t.Errorf("statuses after 504s: %v %v", st, err)
	}

	v.e.ResetCounters()
	v.e.FailNext(emulator.EndpointUpload, 1, emulator.Fault500)
	_, err = v.c.UploadSmall(ctx, "x.txt", strings.NewReader("abc"), 3, TypeInput)
	if !errors.Is(err, ErrServer) {
		t.Errorf("POST on 500: %v", err)
	}
	if n := v.e.Counters().Requests[emulator.EndpointUpload]; n != 1 {
		t.Errorf("POST sent %d times after a 500, want 1", n)
	}
	v.e.FailNext(emulator.EndpointRegister, 1, emulator.Fault503)
	if _, err := v.c.RegisterFile(ctx, FileRegistration{Name: "x"}); !errors.Is(err, ErrServer) {
		t.Errorf("register on 503: %v", err)
	}
	if n := v.e.Counters().Requests[emulator.EndpointRegister]; n != 1 {
		t.Errorf("register sent %d times", n)
	}

	// All attempts fail: ErrServer after exactly MaxAttempts.
	v.e.ResetCounters()
	v.e.FailNext(emulator.EndpointFile, 20, emulator.Fault500)
	if _, err := v.c.GetFile(ctx, files[0].ID); !errors.Is(err, ErrServer) {
		t.Errorf("exhausted: %v", err)
	}
	if n := v.e.Counters().Requests[emulator.EndpointFile]; n != DefaultMaxAttempts {
		t.Errorf("%d attempts", n)
	}
}

func TestEmuUnauthorized(t *testing.T) {
	v := newEnv(t, emulator.Options{}, func(o *Options) { o.APIKey = "not-the-key" })
	ctx := context.Background()
	if err := v.c.CheckAuth(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("CheckAuth: %v", err)
	}
	if _, err := v.c.ListJobs(ctx, nil); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("ListJobs: %v", err)
	}
	if err := v.c.ReadRange(ctx, "abcdef", 0, make([]byte, 4)); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("ReadRange: %v", err)
	}
	var n int64
	for _, k := range v.e.Counters().Requests {
		n += k
	}
	if n != 3 {
		t.Errorf("%d requests: a 401 must not be retried", n)
	}
	// A JWT-shaped key goes as Bearer, and is refused the same way.
	w := newEnv(t, emulator.Options{}, func(o *Options) { o.APIKey = "eyJhbGciOiJIUzI1NiJ9.eyJ4IjoxfQ.c2ln" })
	if err := w.c.CheckAuth(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("JWT: %v", err)
	}
	// The right key passes; a key revoked mid-mount fails.
	ok := newEnv(t, emulator.Options{}, nil)
	if err := ok.c.CheckAuth(ctx); err != nil {
		t.Errorf("good key: %v", err)
	}
	ok.e.SetKeyRevoked(true)
	if err := ok.c.CheckAuth(ctx); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("revoked: %v", err)
	}
}

func TestEmuCutBody(t *testing.T) {
	for _, fault := range []emulator.Fault{emulator.FaultCut, emulator.FaultShort} {
		t.Run(fault.String(), func(t *testing.T) {
			v := newEnv(t, emulator.Options{}, func(o *Options) { o.MaxAttempts = 1 })
			j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "big.bin", Size: 1 << 20}}})
			ctx := context.Background()
			files, err := v.c.JobFiles(ctx, j.ID, "big.bin")
			if err != nil {
				t.Fatal(err)
			}
			id := files[0].ID
			plain := v.plaintext(id)

			// With no retries left, a cut body is an error, not data.
			v.e.FailNext(emulator.EndpointContents, 1, fault)
			p := make([]byte, 500000)
			if err := v.c.ReadRange(ctx, id, 1000, p); !errors.Is(err, ErrShortBody) {
				t.Fatalf("cut body: %v", err)
			}

			// With retries, the read resumes and the bytes are right.
			r, _ := New(Options{BaseURL: v.srv.URL, APIKey: v.e.APIKey(), Sleep: v.clk.Sleep, Now: v.clk.Now})
			// The cut request was counted on arrival: the reset clears it.
			v.e.ResetCounters()
			v.e.FailNext(emulator.EndpointContents, 2, fault)
			if err := r.ReadRange(ctx, id, 1000, p); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(p, plain[1000:501000]) {
				t.Fatal("wrong bytes after cut bodies")
			}
			if n := v.requests(emulator.EndpointContents); n != 3 {
				t.Errorf("%d requests, want 3", n)
			}
			// A cut JSON list is retried too.
			v.e.FailNext(emulator.EndpointJobFiles, 1, fault)
			if fs, err := r.JobFiles(ctx, j.ID, ""); err != nil || len(fs) != 2 {
				t.Errorf("files after a cut: %d %v", len(fs), err)
			}
		})
	}
}

func TestEmuRandomFaultsStillExact(t *testing.T) {
	v := newEnv(t, emulator.Options{Faults: emulator.Faults{ErrorRate: 0.15, ThrottleRate: 0.1, CutRate: 0.15,
		ShortRate: 0.1, Seed: 7, Endpoints: []string{emulator.EndpointContents}}}, nil)
	j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "r.bin", Size: 3 << 20}}})
	ctx := context.Background()
	files, err := v.c.JobFiles(ctx, j.ID, "r.bin")
	if err != nil {
		t.Fatal(err)
	}
	plain := v.plaintext(files[0].ID)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 60 {
		off := rng.Int64N(int64(len(plain)))
		n := 1 + rng.Int64N(min(int64(len(plain))-off, 300000))
		p := make([]byte, n)
		if err := v.c.ReadRange(ctx, files[0].ID, off, p); err != nil {
			t.Fatalf("[%d,+%d): %v", off, n, err)
		}
		if !bytes.Equal(p, plain[off:off+n]) {
			t.Fatalf("[%d,+%d): wrong bytes", off, n)
		}
	}
	if f := v.e.Counters().Faults; len(f) == 0 {
		t.Error("no faults were injected")
	}
}

// TestEmuReadRangeVecUnderFaults: a range read into several buffers (as the cache passes one per block,
// some empty) resumes cut bodies across buffer edges and fills every buffer with the right bytes.
func TestEmuReadRangeVecUnderFaults(t *testing.T) {
	v := newEnv(t, emulator.Options{Faults: emulator.Faults{CutRate: 0.3, ShortRate: 0.1, ErrorRate: 0.1, Seed: 11,
		Endpoints: []string{emulator.EndpointContents}}}, nil)
	j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "v.bin", Size: 2<<20 + 5}}})
	ctx := context.Background()
	files, err := v.c.JobFiles(ctx, j.ID, "v.bin")
	if err != nil {
		t.Fatal(err)
	}
	plain := v.plaintext(files[0].ID)
	rng := rand.New(rand.NewPCG(5, 6))
	for range 40 {
		off := rng.Int64N(int64(len(plain)))
		var bufs [][]byte
		total := int64(0)
		for range 1 + rng.IntN(5) {
			n := min(rng.Int64N(200000), int64(len(plain))-off-total)
			bufs = append(bufs, make([]byte, n))
			total += n
		}
		if err := v.c.ReadRangeVec(ctx, files[0].ID, off, bufs); err != nil {
			t.Fatalf("[%d,+%d) in %d buffers: %v", off, total, len(bufs), err)
		}
		if got := bytes.Join(bufs, nil); !bytes.Equal(got, plain[off:off+total]) {
			t.Fatalf("[%d,+%d) in %d buffers: wrong bytes", off, total, len(bufs))
		}
	}
	if f := v.e.Counters().Faults; f[emulator.FaultCut.String()] == 0 {
		t.Errorf("no cut bodies were injected: %v", f)
	}
}

func TestEmuCancelStopsRetries(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	v.c.sleep = func(c context.Context, d time.Duration) error {
		cancel() // the reader went away during the first backoff
		return c.Err()
	}
	v.e.FailNext(emulator.EndpointJobs, 5, emulator.Fault500)
	_, err := v.c.ListJobs(ctx, nil)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrServer) {
		t.Errorf("%v", err)
	}
	if n := v.e.Counters().Requests[emulator.EndpointJobs]; n != 1 {
		t.Errorf("%d requests after cancel", n)
	}
}

func TestEmuStatusesAndRuns(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ok := v.job(emulator.JobSpec{Name: "good"})
	bad := v.job(emulator.JobSpec{Name: "bad", Fail: true})
	running := v.job(emulator.JobSpec{Name: "running", RunFor: time.Hour})
	ctx := context.Background()

	st, err := v.c.JobStatuses(ctx, ok.ID)
	if err != nil || !st.Completed() || !st.Succeeded() || st.Latest().Status != StatusCompleted {
		t.Errorf("good: %+v %v", st, err)
	}
	for i := 1; i < len(st); i++ {
		if st[i].StatusDate.After(st[i-1].StatusDate.Time) {
			t.Errorf("not newest first: %+v", st)
		}
	}
	st, err = v.c.JobStatuses(ctx, bad.ID)
	if err != nil || !st.Completed() || st.Succeeded() {
		t.Errorf("failed: %+v %v", st, err)
	}
	st, err = v.c.JobStatuses(ctx, running.ID)
	if err != nil || st.Completed() || st.Succeeded() || len(st) == 0 {
		t.Errorf("running: %+v %v", st, err)
	}

	runs, err := v.c.JobRuns(ctx, ok.ID)
	if err != nil || len(runs) != 1 || runs[0].Live() || runs[0].DateCompleted.IsZero() {
		t.Errorf("completed runs %+v %v", runs, err)
	}

	// Into the run: live files, tail, then completion.
	v.clk.Sleep(ctx, 30*time.Minute)
	runs, err = v.c.JobRuns(ctx, running.ID)
	if err != nil || len(runs) != 1 || !runs[0].Live() {
		t.Fatalf("running runs %+v %v", runs, err)
	}
	live, err := v.c.DirectoryContents(ctx, running.ID, runs[0].ID)
	if err != nil || len(live) == 0 {
		t.Fatalf("directory-contents %v %v", live, err)
	}
	var logPath string
	for _, l := range live {
		if strings.HasSuffix(l.Path, "process_output.log") {
			logPath = l.Path
		}
	}
	if logPath == "" {
		t.Fatalf("no process_output.log in %v", live)
	}
	raw, err := v.c.Tail(ctx, running.ID, runs[0].ID, logPath)
	if err != nil || len(raw) == 0 {
		t.Fatalf("tail: %d bytes, %v", len(raw), err)
	}
	lines, err := v.c.TailLines(ctx, running.ID, runs[0].ID, logPath, 3)
	if err != nil || len(lines) == 0 || len(lines) > 3 {
		t.Fatalf("tail lines %q %v", lines, err)
	}
	if !strings.Contains(string(raw), strings.TrimRight(lines[len(lines)-1], "\n")) {
		t.Errorf("last line %q not in the raw tail", lines[len(lines)-1])
	}
	if err := v.e.CompleteJob(running.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.c.DirectoryContents(ctx, running.ID, runs[0].ID); err == nil {
		t.Error("directory-contents of a finished run should fail")
	}
	st, err = v.c.JobStatuses(ctx, running.ID)
	if err != nil || !st.Completed() {
		t.Errorf("after CompleteJob: %+v %v", st, err)
	}
}

func TestEmuUploadSmallAndRegister(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	content := bytes.Repeat([]byte("rescalefs uploads, 0123456789\n"), 5000)
	f, err := v.c.UploadSmall(ctx, "résumé of results.txt", bytes.NewReader(content), int64(len(content)), TypeInput)
	if err != nil {
		t.Fatal(err)
	}
	if f.ID == "" || f.Name != "résumé of results.txt" || f.DecryptedSize != int64(len(content)) || f.TypeID != TypeInput {
		t.Fatalf("uploaded %+v", f)
	}
	sum := sha512.Sum512(content)
	if f.SHA512() != hex.EncodeToString(sum[:]) {
		t.Error("sha512 of the upload differs")
	}
	back := make([]byte, len(content))
	if err := v.c.ReadRange(ctx, f.ID, 0, back); err != nil || !bytes.Equal(back, content) {
		t.Fatalf("read back: %v", err)
	}
	// A non-seekable source, and an empty file.
	g, err := v.c.UploadSmall(ctx, "pipe.txt", io.MultiReader(strings.NewReader("from a pipe")), 11, 0)
	if err != nil || g.DecryptedSize != 11 {
		t.Fatalf("pipe: %+v %v", g, err)
	}
	empty, err := v.c.UploadSmall(ctx, "empty.txt", strings.NewReader(""), 0, TypeInput)
	if err != nil || empty.DecryptedSize != 0 {
		t.Fatalf("empty: %+v %v", empty, err)
	}
	// A size that does not match the source is an error, not a truncated file.
	if _, err := v.c.UploadSmall(ctx, "liar.txt", strings.NewReader("abc"), 10, TypeInput); err == nil {
		t.Error("short source accepted")
	}
	lib, err := v.c.LibraryFiles(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, l := range lib {
		names[l.Name] = true
	}
	if !names["résumé of results.txt"] || !names["pipe.txt"] || !names["empty.txt"] || names["liar.txt"] {
		t.Errorf("library %v", names)
	}
	got, err := v.c.GetFile(ctx, f.ID)
	if err != nil || got.ID != f.ID || got.EncodedEncryptionKey == "" || got.PathParts.Path == "" {
		t.Errorf("get file %+v %v", got, err)
	}

	// Me, Credentials, Register: register the stored object of the upload again, under a new name
	// (the emulator checks that it decrypts with the key and matches size and sha512).
	me, err := v.c.Me(ctx)
	if err != nil || me.DefaultStorage.ID == "" || me.DefaultStorage.ConnectionSettings.Container == "" {
		t.Fatalf("me %+v %v", me, err)
	}
	cred, err := v.c.Credentials(ctx, nil)
	if err != nil || cred.AccessKey == "" || cred.SecretKey == "" || cred.SessionToken == "" || cred.Endpoint == "" ||
		cred.Expiration.IsZero() {
		t.Fatalf("credentials %v %v", cred, err)
	}
	cred2, err := v.c.Credentials(ctx, &CredentialsRequest{
		Storage: &StorageRef{ID: got.Storage.ID, StorageType: got.Storage.StorageType},
		Paths:   []CredentialPath{{PathParts: got.PathParts}},
	})
	if err != nil || cred2.AccessKey == "" {
		t.Fatalf("credentials for a file %v %v", cred2, err)
	}
	reg, err := v.c.RegisterFile(ctx, FileRegistration{
		TypeID: TypeInput, Name: "registered.txt", EncodedEncryptionKey: got.EncodedEncryptionKey,
		PathParts: got.PathParts, IsUploaded: true, DecryptedSize: got.DecryptedSize,
		Storage:       StorageRef{ID: me.DefaultStorage.ID, StorageType: me.DefaultStorage.StorageType, EncryptionType: me.DefaultStorage.EncryptionType},
		FileChecksums: []Checksum{{HashFunction: "sha512", FileHash: got.SHA512()}},
	})
	if err != nil || reg.ID == "" || reg.Name != "registered.txt" {
		t.Fatalf("register %+v %v", reg, err)
	}
	if err := v.c.ReadRange(ctx, reg.ID, 0, back); err != nil || !bytes.Equal(back, content) {
		t.Errorf("read registered: %v", err)
	}
	// A registration the platform refuses says why (Django-REST field errors).
	_, err = v.c.RegisterFile(ctx, FileRegistration{TypeID: TypeInput, Name: ""})
	if !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), "name") {
		t.Errorf("bad registration: %v", err)
	}

	if err := v.c.DeleteFile(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	lib, _ = v.c.LibraryFiles(ctx, "pipe")
	for _, l := range lib {
		if l.ID == g.ID {
			t.Error("deleted file still listed")
		}
	}
}

func TestEmuCheckAuthUnreachableAndNotAPI(t *testing.T) {
	v := newEnv(t, emulator.Options{}, nil)
	ctx := context.Background()
	if err := v.c.CheckAuth(ctx); err != nil {
		t.Fatal(err)
	}
	// The emulator's S3 side is not the API: a base URL pointing below /api/ is caught.
	w, _ := New(Options{BaseURL: v.srv.URL + "/api/v2", APIKey: v.e.APIKey(), Sleep: v.clk.Sleep, Now: v.clk.Now})
	if err := w.CheckAuth(ctx); !errors.Is(err, ErrNotAPI) {
		t.Errorf("wrong prefix: %v", err)
	}
	url := v.srv.URL
	v.srv.Close()
	d, _ := New(Options{BaseURL: url, APIKey: "k", Sleep: v.clk.Sleep, Now: v.clk.Now})
	if err := d.CheckAuth(ctx); !errors.Is(err, ErrUnreachable) {
		t.Errorf("closed server: %v", err)
	}
}
