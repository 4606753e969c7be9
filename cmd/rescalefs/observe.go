package main

import (
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/rescalefs/rescalefs/remote"
)

// platformObserver wraps the HTTP transport of the API client and books every exchange: requests by
// endpoint and status (for --metrics) and the last error (for `rescalefs status`). Whether the platform
// is up and when it last answered are the API client's own judgement (remote.Health), not the
// observer's: one source, so status and metrics cannot disagree. It sits below the client's retries, so
// every attempt counts, and it never looks at headers: the key stays where it is.
type platformObserver struct {
	next    http.RoundTripper
	apiHost string // host[:port] of the API; other hosts are storage (direct S3 transfers)

	mu       sync.Mutex // guards requests and lastErr
	requests map[requestKey]int64
	lastErr  string // the last transport error or 5xx, one line, for status
}

type requestKey struct {
	Endpoint string // a path template such as /api/v2/jobs/{id}/files/, or "storage"
	Code     string // the HTTP status code, or "error" when no answer came
}

func newPlatformObserver(next http.RoundTripper, apiURL string) *platformObserver {
	host := ""
	if u, err := url.Parse(apiURL); err == nil {
		host = u.Host
	}
	return &platformObserver{next: next, apiHost: host, requests: map[requestKey]int64{}}
}

func (o *platformObserver) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(req)
	o.book(req, resp, err, req.URL.Host != o.apiHost)
	return resp, err
}

// observedTransport books the exchanges of another transport in o: the storage clients (direct reads,
// upload parts) have a connection pool of their own, so that their parallel ranges do not hold the
// API's connections, and their exchanges count all the same.
type observedTransport struct {
	o    *platformObserver
	next http.RoundTripper
}

func (t observedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	t.o.book(req, resp, err, true)
	return resp, err
}

// storageClient is an HTTP client under the API client's network policy with its own pool, observed
// by o.
func (o *platformObserver) storageClient(p remote.Policy) *http.Client {
	hc := remote.NewPolicyHTTPClient(p)
	hc.Transport = observedTransport{o: o, next: hc.Transport}
	return hc
}

// book counts one exchange, with storage's (which may share the API's host: the emulator's) apart.
func (o *platformObserver) book(req *http.Request, resp *http.Response, err error, storage bool) {
	api := !storage
	endpoint := "storage"
	if api {
		endpoint = endpointOf(req.URL.Path)
	}
	key := requestKey{Endpoint: endpoint, Code: "error"}
	if err == nil {
		key.Code = strconv.Itoa(resp.StatusCode)
	}
	o.mu.Lock()
	o.requests[key]++
	switch {
	case err != nil && api:
		o.lastErr = oneLine(err.Error())
	case err == nil && api && resp.StatusCode >= 500:
		o.lastErr = req.Method + " " + endpoint + ": " + resp.Status
	}
	o.mu.Unlock()
}

// endpointOf turns a request path into a template with bounded variety: ids and file paths become
// placeholders, so the metrics have a few dozen series, not one per file.
func endpointOf(path string) string {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, s := range segs {
		switch {
		case i > 0 && (segs[i-1] == "tail" || segs[i-1] == "contents" && i < len(segs)-1):
			return "/" + strings.Join(append(segs[:i:i], "{path}"), "/") + "/"
		case isPathWord(s):
		default:
			segs[i] = "{id}"
		}
	}
	return "/" + strings.Join(segs, "/") + "/"
}

// isPathWord: a fixed word of the API's paths (lowercase letters, dashes, underscores, v2/v3), not an id.
func isPathWord(s string) bool {
	if s == "v2" || s == "v3" || s == "_emulator" {
		return true
	}
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '-' && r != '_' {
			return false
		}
	}
	return len(s) > 1
}

// platformStatus is what the mount adds about the platform under "extra" in the status file: where it
// is and what went wrong last. Whether it answers and when it last did are in the status's own
// "platform" (remote.HealthSnapshot), the one source for status, --watch and --metrics.
type platformStatus struct {
	URL       string `json:"url"`
	LastError string `json:"lastError,omitempty"`
}

func (o *platformObserver) status(apiURL string) platformStatus {
	st := platformStatus{URL: apiURL}
	o.mu.Lock()
	st.LastError = o.lastErr
	o.mu.Unlock()
	return st
}

// requestCounts is a copy of the counters.
func (o *platformObserver) requestCounts() map[requestKey]int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[requestKey]int64, len(o.requests))
	maps.Copy(out, o.requests)
	return out
}
