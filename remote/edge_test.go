package remote

// Tests with tiny httptest handlers, only for answers the emulator cannot give on purpose: a server
// that echoes our Authorization header back, an over-long or mislabelled body, a server that ignores
// Range, an HTML page, foreign `next` links. Everything the emulator can do is tested against it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newTestClient is a client on url with the fake clock and debug logs captured in logs.
func newTestClient(t *testing.T, url, key string, logs *bytes.Buffer) (*Client, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	var lg *slog.Logger
	if logs != nil {
		lg = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	c, err := New(Options{BaseURL: url, APIKey: key, Logger: lg, Sleep: clk.Sleep, Now: clk.Now, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	return c, clk
}

// echoServer answers /api/v2/files/<what>/... as <what> says, echoing the Authorization header into
// every body it can: the worst a misbehaving server or proxy could do with our key.
func echoServer(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		what := ""
		if len(parts) >= 4 {
			what = parts[3]
		}
		switch {
		case strings.HasPrefix(what, "s"):
			code, _ := strconv.Atoi(what[1:])
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"detail": "you sent %s", %q: ["%s"]}`, auth, auth, auth)
		case what == "html":
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprintf(w, "<html>%s</html>", auth)
		case what == "badjson":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"id": %s`, auth)
		case what == "cut":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Range", "bytes 0-99/100")
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusPartialContent)
			io.WriteString(w, auth)
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
		case what == "long":
			w.Header().Set("Content-Range", "bytes 0-9/100")
			w.WriteHeader(http.StatusPartialContent)
			w.(http.Flusher).Flush() // chunked: no Content-Length to catch it early
			io.WriteString(w, auth+auth)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"detail": %q}`, auth)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestKeyNeverInErrorsOrLogs(t *testing.T) {
	for _, key := range []string{"0a1b2c3d4e5f60718293a4b5c6d7e8f901234567", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"} {
		var logs bytes.Buffer
		s := echoServer(t)
		c, _ := newTestClient(t, s.URL, key, &logs)
		ctx := context.Background()
		var errs []error
		for _, code := range []int{400, 401, 403, 404, 409, 416, 429, 500, 502, 503} {
			_, err := c.GetFile(ctx, "s"+strconv.Itoa(code))
			errs = append(errs, err)
			errs = append(errs, c.ReadRange(ctx, "s"+strconv.Itoa(code), 0, make([]byte, 10)))
			_, err = c.UploadSmall(ctx, "x", strings.NewReader("abc"), 3, 1)
			errs = append(errs, err)
		}
		_, err := c.GetFile(ctx, "html")
		errs = append(errs, err)
		_, err = c.GetFile(ctx, "badjson")
		errs = append(errs, err)
		errs = append(errs, c.ReadRange(ctx, "cut", 0, make([]byte, 100)))
		errs = append(errs, c.ReadRange(ctx, "long", 0, make([]byte, 10)))
		_, err = c.Tail(ctx, "j", "1", "process_output.log")
		errs = append(errs, err)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		errs = append(errs, c.ReadRange(cctx, "s500", 0, make([]byte, 10)))
		errs = append(errs, c.CheckAuth(ctx))

		// Unreachable: a port nothing listens on.
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := "http://" + l.Addr().String()
		l.Close()
		d, _ := newTestClient(t, dead, key, &logs)
		errs = append(errs, d.CheckAuth(ctx))
		_, err = d.UploadSmall(ctx, "x", strings.NewReader("abc"), 3, 1)
		errs = append(errs, err)

		for i, err := range errs {
			t.Logf("case %d: %v", i, err)
			if err == nil {
				t.Errorf("case %d: no error", i)
				continue
			}
			if strings.Contains(err.Error(), key) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), key) {
				t.Errorf("case %d: key in error: %v", i, err)
			}
		}
		if logs.Len() == 0 {
			t.Error("no logs captured: the retries should have logged")
		}
		if strings.Contains(logs.String(), key) {
			t.Errorf("key in logs:\n%s", logs.String())
		}
		// And the error kinds are the right ones.
		if !errors.Is(errs[3], ErrUnauthorized) || !errors.Is(errs[len(errs)-2], ErrUnreachable) ||
			!errors.Is(errs[30], ErrNotAPI) || !errors.Is(errs[32], ErrShortBody) || !errors.Is(errs[33], ErrLongBody) {
			t.Errorf("kinds: %v | %v | %v | %v | %v", errs[3], errs[len(errs)-2], errs[30], errs[32], errs[33])
		}
	}
}

func TestCheckAuthNotAPI(t *testing.T) {
	ctx := context.Background()
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!doctype html><title>Welcome</title>")
	}))
	defer html.Close()
	c, _ := newTestClient(t, html.URL, "k", nil)
	if err := c.CheckAuth(ctx); !errors.Is(err, ErrNotAPI) {
		t.Errorf("HTML 200: %v", err)
	}
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	c, _ = newTestClient(t, notFound.URL, "k", nil)
	if err := c.CheckAuth(ctx); !errors.Is(err, ErrNotAPI) {
		t.Errorf("404: %v", err)
	}
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"hello": "world"}`)
	}))
	defer other.Close()
	c, _ = newTestClient(t, other.URL, "k", nil)
	if err := c.CheckAuth(ctx); !errors.Is(err, ErrNotAPI) {
		t.Errorf("other JSON: %v", err)
	}
}

// rangeServer serves a 100-byte file with one deliberate fault.
func rangeServer(t *testing.T, fault string) (*httptest.Server, []byte) {
	data := make([]byte, 100)
	for i := range data {
		data[i] = byte(i)
	}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a, b int
		fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-%d", &a, &b)
		switch fault {
		case "ignore": // a server without Range support
			w.Header().Set("Content-Length", "100")
			w.Write(data)
		case "shifted":
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/100", a+1, b+1))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a+1 : b+2])
		case "longlength":
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/100", a, b))
			w.Header().Set("Content-Length", strconv.Itoa(b-a+2))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a : b+2])
		case "nocontentrange":
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[a : b+1])
		}
	}))
	t.Cleanup(s.Close)
	return s, data
}

func TestReadRangeMisbehavingServers(t *testing.T) {
	ctx := context.Background()
	s, data := rangeServer(t, "ignore")
	c, _ := newTestClient(t, s.URL, "k", nil)
	p := make([]byte, 10)
	if err := c.ReadRange(ctx, "f", 37, p); err != nil || !bytes.Equal(p, data[37:47]) {
		t.Errorf("200 without Range support: %v %v", err, p)
	}
	if err := c.ReadRange(ctx, "f", 95, p); !errors.Is(err, ErrShortBody) {
		t.Errorf("200 shorter than the range: %v", err)
	}
	for fault, want := range map[string]error{"shifted": ErrBadRange, "longlength": ErrLongBody, "nocontentrange": ErrBadRange} {
		s, _ := rangeServer(t, fault)
		c, _ := newTestClient(t, s.URL, "k", nil)
		if err := c.ReadRange(ctx, "f", 10, make([]byte, 10)); !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", fault, err, want)
		}
	}
}

func TestNextLinksStayOnOurHost(t *testing.T) {
	var hits []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits = append(hits, r.URL.RequestURI())
		switch r.URL.Query().Get("page") {
		case "":
			// absolute, naming a host that must never see the key
			io.WriteString(w, `{"count": 3, "next": "https://evil.example:1/api/v2/jobs/?page=2&page_size=1000", "results": [{"id": "a"}]}`)
		case "2":
			io.WriteString(w, `{"count": 3, "next": "?page=3&page_size=1000", "results": [{"id": "b"}]}`) // relative
		default:
			io.WriteString(w, `{"count": 3, "next": null, "results": [{"id": "c"}]}`)
		}
	}))
	defer s.Close()
	c, _ := newTestClient(t, s.URL, "k", nil)
	jobs, err := c.ListJobs(context.Background(), nil)
	if err != nil || len(jobs) != 3 || jobs[2].ID != "c" {
		t.Fatalf("%v %+v", err, jobs)
	}
	if len(hits) != 3 || !strings.Contains(hits[0], "page_size=1000") {
		t.Errorf("hits %v", hits)
	}
}

// slowSeeker is a seekable source whose reads take a while, like a file on a busy disk.
type slowSeeker struct{ *bytes.Reader }

func (s slowSeeker) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.Reader.Read(p[:min(len(p), 4096)])
}

// A server that throttles before reading the body: the transport may still be writing the first
// attempt's body when the second attempt rewinds the source.
func TestUploadRetryWhileBodyStillSent(t *testing.T) {
	var calls atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id": "up1"}`)
	}))
	defer s.Close()
	c, _ := newTestClient(t, s.URL, "k", nil)
	data := bytes.Repeat([]byte("x"), expectContinueAbove-1)
	f, err := c.UploadSmall(context.Background(), "big.txt", slowSeeker{bytes.NewReader(data)}, int64(len(data)), 0)
	if err != nil || f.ID != "up1" {
		t.Fatalf("%+v %v", f, err)
	}
}

func TestJobStatusesNewestFirst(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"count": 3, "next": null, "results": [
			{"status": "Pending", "statusDate": "2024-05-01T10:00:00Z"},
			{"status": "Completed", "statusDate": "2024-05-01T12:00:00Z", "statusReason": "Completed successfully"},
			{"status": "Executing", "statusDate": "2024-05-01T11:00:00Z"}]}`)
	}))
	defer s.Close()
	c, _ := newTestClient(t, s.URL, "k", nil)
	st, err := c.JobStatuses(context.Background(), "j")
	if err != nil || len(st) != 3 || st[0].Status != "Completed" || st[1].Status != "Executing" || st[2].Status != "Pending" {
		t.Fatalf("%+v %v", st, err)
	}
}
