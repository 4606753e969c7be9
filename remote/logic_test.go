package remote

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	min, max := time.Second, 30*time.Second
	for attempt := 1; attempt <= 12; attempt++ {
		d := min << (attempt - 1)
		if d > max || attempt > 6 {
			d = max
		}
		for range 200 {
			got := backoff(attempt, min, max)
			if got < d/2 || got > d {
				t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, got, d/2, d)
			}
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"7", 7 * time.Second, true},
		{" 0 ", 0, true},
		{"1.5", 1500 * time.Millisecond, true},
		{"-3", 0, false},
		{"soon", 0, false},
		{"Wed, 01 May 2024 12:00:42 GMT", 42 * time.Second, true},
		{"Wed, 01 May 2024 11:00:00 GMT", 0, true}, // in the past: go now
	}
	for _, c := range cases {
		got, ok := parseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("parseRetryAfter(%q) = %v, %v; want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestRetryClassification(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "HEAD": true, "DELETE": true, "PUT": true, "POST": false, "PATCH": false} {
		if idempotent(m) != want {
			t.Errorf("idempotent(%s) = %v", m, !want)
		}
	}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	if !notSent(refused) || !notSent(fmt.Errorf("x: %w", syscall.ECONNREFUSED)) {
		t.Error("a refused dial must count as not sent")
	}
	if notSent(&net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}) {
		t.Error("a reset read may have been sent")
	}
}

func TestDates(t *testing.T) {
	cases := []struct {
		in   string
		want time.Time
	}{
		{`"2016-04-21T17:24:34.898495Z"`, time.Date(2016, 4, 21, 17, 24, 34, 898495000, time.UTC)},
		{`"2016-04-21T19:24:34.898495+02:00"`, time.Date(2016, 4, 21, 17, 24, 34, 898495000, time.UTC)},
		{`"2016-04-21T17:24:34Z"`, time.Date(2016, 4, 21, 17, 24, 34, 0, time.UTC)},
		{`"2016-04-21T17:24:34.5"`, time.Date(2016, 4, 21, 17, 24, 34, 500000000, time.UTC)},
		{`null`, time.Time{}},
		{`""`, time.Time{}},
	}
	for _, c := range cases {
		var v Time
		if err := json.Unmarshal([]byte(c.in), &v); err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if !v.Equal(c.want) || v.IsZero() != c.want.IsZero() {
			t.Errorf("%s: got %v want %v", c.in, v.Time, c.want)
		}
	}
	var v Time
	if err := json.Unmarshal([]byte(`"yesterday"`), &v); err == nil {
		t.Error("a bad date must fail")
	}
	b, _ := json.Marshal(Time{time.Date(2016, 4, 21, 17, 24, 34, 898495000, time.UTC)})
	if string(b) != `"2016-04-21T17:24:34.898495Z"` {
		t.Errorf("marshal: %s", b)
	}
}

func TestFileDecode(t *testing.T) {
	const body = `{"id": "xTyjeg", "name": "fvSchemes", "relativePath": "airFoil2D/system/fvSchemes",
	  "path": "user/user_KBdkT/output/job_OsKBd/run1/airFoil2D/system/fvSchemes", "decryptedSize": 1680,
	  "dateUploaded": "2016-04-21T17:24:34.898495Z", "typeId": 5, "isUploaded": true, "isDeleted": false,
	  "downloadUrl": "https://platform.rescale.com/api/v2/files/xTyjeg/contents/",
	  "encodedEncryptionKey": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "owner": "a@b.c", "sharedWith": [],
	  "fileChecksums": [{"hashFunction": "md5", "fileHash": "x"}, {"hashFunction": "sha512", "fileHash": "ABCDEF"}],
	  "pathParts": {"container": "bucket", "path": "key/x"}, "viewInBrowser": false, "md5": "zz",
	  "storage": {"id": 42, "storageType": "S3Storage", "encryptionType": "default", "extra": {"a": 1},
	    "connectionSettings": {"region": "us-east-1", "container": "bucket", "pathBase": "user/user_X", "endpoint": "http://127.0.0.1:9/"}}}`
	var f File
	if err := json.Unmarshal([]byte(body), &f); err != nil {
		t.Fatal(err)
	}
	if f.ID != "xTyjeg" || f.DecryptedSize != 1680 || f.TypeID != TypeOutput || !f.available() ||
		f.RelativePath != "airFoil2D/system/fvSchemes" || f.PathParts.Path != "key/x" ||
		f.Storage.ID != "42" || f.Storage.ConnectionSettings.Endpoint != "http://127.0.0.1:9/" ||
		f.Storage.ConnectionSettings.PathBase != "user/user_X" || f.DateUploaded.Year() != 2016 {
		t.Fatalf("decoded %+v", f)
	}
	if f.SHA512() != "abcdef" {
		t.Errorf("SHA512 = %q", f.SHA512())
	}
	if k, err := f.EncryptionKey(); err != nil || len(k) != 32 || k[31] != 31 {
		t.Errorf("key %v %v", k, err)
	}
	var r Run
	if err := json.Unmarshal([]byte(`{"id": 1, "dateStarted": "2016-04-21T17:24:34Z", "dateCompleted": null}`), &r); err != nil {
		t.Fatal(err)
	}
	if r.ID != "1" || !r.Live() {
		t.Errorf("run %+v live=%v", r, r.Live())
	}
	r.DateCompleted = Time{time.Now()}
	if r.Live() {
		t.Error("a completed run is not live")
	}
	if (Run{}).Live() {
		t.Error("a run not started is not live")
	}
}

func TestStatuses(t *testing.T) {
	st := func(s, reason string) Status { return Status{Status: s, StatusReason: reason} }
	cases := []struct {
		name                 string
		s                    Statuses
		latest               string
		completed, succeeded bool
	}{
		{"empty", nil, "", false, false},
		{"running", Statuses{st("Executing", ""), st("Validated", ""), st("Queued", ""), st("Pending", "")}, "Executing", false, false},
		{"success", Statuses{st("Completed", "Completed successfully"), st("Executing", ""), st("Pending", "")}, "Completed", true, true},
		{"failed", Statuses{st("Completed", "A run failed"), st("Stopping", "A run failed"), st("Executing", "")}, "Completed", true, false},
		{"stopped via stopping", Statuses{st("Completed", "Completed successfully"), st("Stopping", "User stopped"), st("Executing", "")}, "Completed", true, false},
		{"stopping", Statuses{st("Stopping", "A run failed"), st("Executing", "")}, "Stopping", false, false},
	}
	for _, c := range cases {
		if got := c.s.Latest().Status; got != c.latest {
			t.Errorf("%s: Latest %q", c.name, got)
		}
		if c.s.Completed() != c.completed || c.s.Succeeded() != c.succeeded {
			t.Errorf("%s: Completed %v Succeeded %v", c.name, c.s.Completed(), c.s.Succeeded())
		}
	}
}

func TestJWTAndAuthHeader(t *testing.T) {
	cases := map[string]bool{
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig": true,
		"0123456789abcdef0123456789abcdef01234567": false,
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0":     false,
		"ab.cd.ef":                                 false,
	}
	for k, want := range cases {
		if isJWT(k) != want {
			t.Errorf("isJWT(%q) = %v", k, !want)
		}
		c, err := New(Options{APIKey: k})
		if err != nil {
			t.Fatal(err)
		}
		wantAuth := "Token " + k
		if want {
			wantAuth = "Bearer " + k
		}
		if c.auth != wantAuth {
			t.Errorf("auth for %q = %q", k, c.auth)
		}
	}
}

func TestBaseURL(t *testing.T) {
	cases := map[string]string{
		"":                                "https://platform.rescale.com",
		"https://eu.rescale.com/":         "https://eu.rescale.com",
		"http://127.0.0.1:8080///":        "http://127.0.0.1:8080",
		"https://example.com/prefix/":     "https://example.com/prefix",
		"https://kr.rescale.com?x=1#frag": "https://kr.rescale.com",
	}
	for in, want := range cases {
		c, err := New(Options{BaseURL: in, APIKey: "k"})
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if c.BaseURL() != want {
			t.Errorf("%q -> %q want %q", in, c.BaseURL(), want)
		}
	}
	for _, bad := range []string{"platform.rescale.com", "ftp://x", "https://u:secret@host"} {
		if _, err := New(Options{BaseURL: bad, APIKey: "k"}); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error shows the password: %v", bad, err)
		}
	}
	if _, err := New(Options{}); err == nil {
		t.Error("no key accepted")
	}
}

func TestNoKeyInStrings(t *testing.T) {
	const key = "sekrit-key-0123456789"
	o := Options{APIKey: key, BaseURL: "https://eu.rescale.com"}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(o), fmt.Sprintf("%v %+v %s %#v %#v %#v", o, o, c, o, c, *c), fmt.Sprint(c.LogValue()), fmt.Sprint(o.LogValue())} {
		if strings.Contains(s, key) {
			t.Errorf("key in %q", s)
		}
	}
	sc := StorageCredentials{AccessKey: "AKIA-secret", SecretKey: "s3cr3t", SessionToken: "tok3n"}
	for _, s := range []string{fmt.Sprint(sc), fmt.Sprintf("%v %+v %#v", sc, sc, sc), sc.LogValue().String()} {
		if strings.Contains(s, "s3cr3t") || strings.Contains(s, "tok3n") || strings.Contains(s, "AKIA-secret") {
			t.Errorf("credentials in %q", s)
		}
	}
}

func TestParseDetailAndIs(t *testing.T) {
	cases := []struct {
		body, want string
		ok         bool
	}{
		{`{"detail": "Invalid token."}`, "Invalid token.", true},
		{`{"name": ["This field is required."], "typeId": ["A valid integer is required.", "x"]}`,
			"name: This field is required.; typeId: A valid integer is required.; x", true},
		{`["Only one."]`, "Only one.", true},
		{``, "", true},
		{`<html><body>Not Found</body></html>`, "", false},
	}
	for _, c := range cases {
		got, ok := parseDetail([]byte(c.body))
		if got != c.want || ok != c.ok {
			t.Errorf("parseDetail(%s) = %q, %v", c.body, got, ok)
		}
	}
	is := map[int][]error{
		400: {ErrBadRequest}, 401: {ErrUnauthorized}, 403: {ErrForbidden}, 404: {ErrNotFound},
		416: {ErrRange, ErrBadRequest}, 429: {ErrThrottled}, 500: {ErrServer}, 504: {ErrServer}, 409: {ErrBadRequest},
	}
	all := []error{ErrBadRequest, ErrUnauthorized, ErrForbidden, ErrNotFound, ErrRange, ErrThrottled, ErrServer, ErrNotAPI}
	for status, want := range is {
		var err error = fmt.Errorf("wrapped: %w", &APIError{Method: "GET", Path: "/api/v2/jobs/", Status: status})
		for _, s := range all {
			expect := false
			for _, w := range want {
				expect = expect || w == s
			}
			if errors.Is(err, s) != expect {
				t.Errorf("%d is %v: %v", status, s, !expect)
			}
		}
	}
	e := &APIError{Method: "GET", Path: "/x/", Status: 404, Detail: "gone", notAPI: true}
	if !errors.Is(e, ErrNotAPI) || !strings.Contains(e.Error(), "GET /x/: 404 Not Found: gone") {
		t.Errorf("%v", e)
	}
}

func TestScopes(t *testing.T) {
	cases := []struct {
		method, path string
		want         Scope
	}{
		{"GET", "/api/v2/jobs/", ScopeJobsUsage},
		{"POST", "/api/v2/jobs/", ScopeJobSubmission},
		{"POST", "/api/v2/jobs/abc/submit/", ScopeJobSubmission},
		{"POST", "/api/v2/jobs/abc/stop/", ScopeJobsUsage},
		{"GET", "/api/v2/jobs/abc/statuses/", ScopeJobsUsage},
		{"GET", "/api/v2/jobs/abc/runs/1/tail/a/b/c", ScopeJobsUsage},
		{"GET", "/api/v2/files/", ScopeFileAccess},
		{"GET", "/api/v2/files/xTy/contents/", ScopeFileAccess},
		{"POST", "/api/v2/files/contents/", ScopeFileAccess},
		{"POST", "/api/v3/credentials/", ScopeCredentialAccess},
		{"GET", "/api/v3/users/me/", ScopeUser},
		{"POST", "/api/v3/files/", ScopeUser},
		{"GET", "/elsewhere", ScopeUser},
	}
	for _, c := range cases {
		if got := scopeOf(c.method, c.path); got != c.want {
			t.Errorf("%s %s: %s want %s", c.method, c.path, got, c.want)
		}
	}
}

func TestBucket(t *testing.T) {
	clk := newFakeClock()
	// 3600/h = 1/s, burst 5 s: five go at once, then one per second.
	l := newLimiter(map[Scope]float64{ScopeFileAccess: 3600}, 5*time.Second, clk.Now, clk.Sleep)
	ctx := context.Background()
	for range 5 {
		if err := l.wait(ctx, ScopeFileAccess); err != nil {
			t.Fatal(err)
		}
	}
	if s := clk.Sleeps(); len(s) != 0 {
		t.Fatalf("burst waited: %v", s)
	}
	for range 3 {
		if err := l.wait(ctx, ScopeFileAccess); err != nil {
			t.Fatal(err)
		}
	}
	s := clk.Sleeps()
	if len(s) != 3 {
		t.Fatalf("sleeps %v", s)
	}
	for _, d := range s {
		if d < 990*time.Millisecond || d > 1010*time.Millisecond {
			t.Errorf("wait %v, want about 1s (3595 per hour after the burst)", d)
		}
	}
	// Unlimited scopes never wait; after an idle spell the burst is back.
	if err := l.wait(ctx, ScopeUser); err != nil || len(clk.Sleeps()) != 3 {
		t.Errorf("unlimited scope waited")
	}
	clk.Sleep(ctx, time.Hour)
	n := len(clk.Sleeps())
	for range 5 {
		l.wait(ctx, ScopeFileAccess)
	}
	if len(clk.Sleeps()) != n {
		t.Error("burst not refilled")
	}
	// A pause (429 Retry-After) holds the scope.
	l.pause(ScopeFileAccess, clk.Now().Add(7*time.Second))
	l.wait(ctx, ScopeFileAccess)
	if s := clk.Sleeps(); s[len(s)-1] < 7*time.Second {
		t.Errorf("pause not honoured: %v", s[len(s)-1])
	}
	// A cancelled wait gives its token back and returns at once.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.wait(cctx, ScopeFileAccess); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled wait: %v", err)
	}
	// Published defaults: file-access is 25/s with a minute of burst.
	d := newLimiter(nil, 0, clk.Now, clk.Sleep)
	if b := d.buckets[ScopeFileAccess]; b.rate != 88500.0/3600 || b.burst != 1500 {
		t.Errorf("file-access bucket %v/s burst %v", b.rate, b.burst)
	}
	if b := d.buckets[ScopeUser]; b.rate != 7080.0/3600 || b.burst != 120 {
		t.Errorf("user bucket %v/s burst %v", b.rate, b.burst)
	}
}

func TestContentRangeParse(t *testing.T) {
	s, e, tot, err := parseContentRange("bytes 10-19/100")
	if err != nil || s != 10 || e != 19 || tot != 100 {
		t.Errorf("%d %d %d %v", s, e, tot, err)
	}
	if _, _, tot, err := parseContentRange("bytes 0-0/*"); err != nil || tot != -1 {
		t.Errorf("star total: %v", err)
	}
	for _, bad := range []string{"", "bytes */100", "bytes 5-4/100", "bytes 0-99/99", "items 0-1/2", "bytes 0-x/5"} {
		if _, _, _, err := parseContentRange(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestSegments(t *testing.T) {
	for _, bad := range []string{"", ".", "..", "a/b", "a?b", `a\b`} {
		if _, err := segment("id", bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	for _, bad := range []string{"", "/", "a//b", "../x", "a/./b"} {
		if _, err := tailPath("j", "1", bad); err == nil {
			t.Errorf("tail %q accepted", bad)
		}
	}
	if p, err := tailPath("j", "1", "airFoil2D/0/U"); err != nil || p != "/api/v2/jobs/j/runs/1/tail/airFoil2D/0/U" {
		t.Errorf("%q %v", p, err)
	}
}

// The platform counts a sliding hour: no hour may hold more than the limit, burst included.
func TestBucketNeverOverAnHour(t *testing.T) {
	for _, perHour := range []float64{120, 1000, 7200} {
		clk := newFakeClock()
		l := newLimiter(map[Scope]float64{ScopeUser: perHour}, 0, clk.Now, clk.Sleep)
		var times []time.Time
		for range int(perHour * 3) {
			if err := l.wait(context.Background(), ScopeUser); err != nil {
				t.Fatal(err)
			}
			times = append(times, clk.Now())
		}
		lo := 0
		for hi := range times {
			for times[hi].Sub(times[lo]) >= time.Hour {
				lo++
			}
			if n := hi - lo + 1; float64(n) > perHour {
				t.Fatalf("%v/h: %d requests within an hour", perHour, n)
			}
		}
	}
}
