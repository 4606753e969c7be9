package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// fakeClock is an injectable clock that moves only when told.
type fakeClock = testutil.Clock

func newFakeClock() *fakeClock {
	return testutil.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
}

type harness struct {
	t     *testing.T
	e     *Emulator
	srv   *httptest.Server
	clock *fakeClock
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	clock := newFakeClock()
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		srv.Close()
		e.Close()
	})
	return &harness{t: t, e: e, srv: srv, clock: clock}
}

// do sends a request with the API key and returns the response with its body read.
func (h *harness) do(method, path string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	h.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = h.srv.URL + path
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Token "+h.e.APIKey())
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

// getJSON GETs path, expects 200 and decodes the body into v.
func (h *harness) getJSON(path string, v any) {
	h.t.Helper()
	resp, b := h.do(http.MethodGet, path, nil)
	if resp.StatusCode != http.StatusOK {
		h.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		h.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

type pageOf[T any] struct {
	Count    int     `json:"count"`
	Next     *string `json:"next"`
	Previous *string `json:"previous"`
	Results  []T     `json:"results"`
}

// all follows next links from path and returns every result.
func all[T any](h *harness, path string) []T {
	h.t.Helper()
	var out []T
	for path != "" {
		var p pageOf[T]
		h.getJSON(path, &p)
		out = append(out, p.Results...)
		path = ""
		if p.Next != nil {
			path = *p.Next
		}
	}
	return out
}

func plaintext(t *testing.T, e *Emulator, id string) []byte {
	t.Helper()
	rc, _, err := e.Plaintext(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAddJob(t *testing.T, e *Emulator, spec JobSpec) Job {
	t.Helper()
	j, err := e.AddJob(spec)
	if err != nil {
		t.Fatal(err)
	}
	return j
}
