package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Pagination (rescale-api.md, "Basics"): Django REST framework's PageNumberPagination.
const (
	defaultPageSize = 25
	maxPageSize     = 1000
)

// timeFormat is Rescale's date format: RFC 3339 with microseconds, in UTC with Z.
const timeFormat = "2006-01-02T15:04:05.000000Z07:00"

func fmtTime(t time.Time) string { return t.UTC().Format(timeFormat) }

func fmtTimePtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := fmtTime(t)
	return &s
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"detail": "encoding error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// writeDetail writes a Django-REST error body: {"detail": "..."}.
func writeDetail(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]string{"detail": detail})
}

// writeFieldErrors writes a Django-REST validation error: {"field": ["message"]}.
func writeFieldErrors(w http.ResponseWriter, field, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string][]string{field: {msg}})
}

// authorized checks the API key: "Token <key>", or "Bearer <key>" as clients send JWT-shaped session keys.
// Any failure answers 401 with DRF's messages.
func (e *Emulator) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if h == "" {
		w.Header().Set("WWW-Authenticate", "Token")
		writeDetail(w, http.StatusUnauthorized, "Authentication credentials were not provided.")
		return false
	}
	scheme, key, _ := strings.Cut(h, " ")
	key = strings.TrimSpace(key)
	if (!strings.EqualFold(scheme, "Token") && !strings.EqualFold(scheme, "Bearer")) || key != e.APIKey() || e.revoked.Load() {
		w.Header().Set("WWW-Authenticate", "Token")
		writeDetail(w, http.StatusUnauthorized, "Invalid token.")
		return false
	}
	return true
}

// baseURL is the absolute URL prefix of the emulator as the client reached it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// page is DRF's page: {"count", "next", "previous", "results"}.
type page struct {
	Count    int     `json:"count"`
	Next     *string `json:"next"`
	Previous *string `json:"previous"`
	Results  any     `json:"results"`
}

// paginate answers the page of items the query asks for, rendering only that page's items.
// Like DRF, an out-of-range or malformed page answers 404 {"detail": "Invalid page."}.
func paginate[T any](w http.ResponseWriter, r *http.Request, items []T, render func(T) any) {
	q := r.URL.Query()
	size := defaultPageSize
	if s, err := strconv.Atoi(q.Get("page_size")); err == nil && s > 0 {
		size = min(s, maxPageSize)
	}
	num := 1
	if p := q.Get("page"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil && p != "last" {
			writeDetail(w, http.StatusNotFound, "Invalid page.")
			return
		}
		num = n
		if p == "last" {
			num = max(1, (len(items)+size-1)/size)
		}
	}
	pages := max(1, (len(items)+size-1)/size)
	if num < 1 || num > pages {
		writeDetail(w, http.StatusNotFound, "Invalid page.")
		return
	}
	lo, hi := (num-1)*size, min(num*size, len(items))
	res := make([]any, 0, hi-lo)
	for _, it := range items[lo:hi] {
		res = append(res, render(it))
	}
	out := page{Count: len(items), Results: res}
	link := func(n int) *string {
		scheme, host := publicOrigin(r)
		u := url.URL{Scheme: scheme, Host: host, Path: r.URL.Path}
		qq := r.URL.Query()
		if n == 1 {
			qq.Del("page") // DRF drops the page parameter for the first page
		} else {
			qq.Set("page", strconv.Itoa(n))
		}
		u.RawQuery = qq.Encode()
		s := u.String()
		return &s
	}
	if num < pages {
		out.Next = link(num + 1)
	}
	if num > 1 {
		out.Previous = link(num - 1)
	}
	writeJSON(w, http.StatusOK, out)
}

// publicOrigin is the scheme and host a client used to reach us: behind a TLS-terminating proxy that is
// what X-Forwarded-Proto and X-Forwarded-Host say (the first hop's, when a chain lists several), so
// absolute links such as a page's `next` work for the client.
func publicOrigin(r *http.Request) (scheme, host string) {
	scheme, host = "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	first := func(v string) string { s, _, _ := strings.Cut(v, ","); return strings.TrimSpace(s) }
	if p := strings.ToLower(first(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
		scheme = p
	}
	if h := first(r.Header.Get("X-Forwarded-Host")); h != "" && !strings.ContainsAny(h, "/?#@ ") {
		host = h
	}
	return scheme, host
}
