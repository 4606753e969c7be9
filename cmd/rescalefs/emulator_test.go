package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startEmulatorCommand runs `rescalefs emulator args...` and reads the URL and key from its first
// line. stop ends it and fails unless it exits 0.
func startEmulatorCommand(t *testing.T, args ...string) (url, key, line string, stop func()) {
	t.Helper()
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- runEmulator(args, pw, &stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("first line: %v (stderr %s)", err, stderr.String())
	}
	go io.Copy(io.Discard, pr)
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "RESCALE_API_URL="); ok {
			url = v
		}
		if v, ok := strings.CutPrefix(f, "RESCALE_API_KEY="); ok {
			key = v
		}
	}
	stop = func() {
		t.Helper()
		close(emulatorStopped)
		if code := <-done; code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		emulatorStopped = make(chan struct{})
	}
	return url, key, line, stop
}

func TestEmulatorCommand(t *testing.T) {
	url, key, line, stop := startEmulatorCommand(t, "--listen", "127.0.0.1:0", "--sample-jobs", "--sample-large-size", "64KiB")
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0") || key == "" {
		t.Fatalf("first line %q", line)
	}
	req, _ := http.NewRequest(http.MethodGet, url+"/api/v2/jobs/", nil)
	req.Header.Set("Authorization", "Token "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Count int `json:"count"`
	}
	json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if resp.StatusCode != 200 || page.Count < 5 {
		t.Fatalf("jobs: %d, count %d", resp.StatusCode, page.Count)
	}

	// The shell helpers.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "out.txt"), []byte("x"), 0o644)
	var out, errb bytes.Buffer
	if code := runEmulator([]string{"publish", "--url", url, "--api-key", key, "--name", "mine", dir}, &out, &errb); code != exitOK || len(strings.TrimSpace(out.String())) < 5 {
		t.Fatalf("publish: %d %q %q", code, out.String(), errb.String())
	}
	out.Reset()
	t.Setenv("RESCALE_API_URL", url)
	t.Setenv("RESCALE_API_KEY", key)
	if code := runEmulator([]string{"add-job", "--name", "later", "--duration", "2m"}, &out, &errb); code != exitOK || out.Len() == 0 {
		t.Fatalf("add-job: %d %q %q", code, out.String(), errb.String())
	}

	stop()
}

func TestEmulatorCommandUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, exitOK},
		{[]string{"--listen", "0.0.0.0:8080"}, exitUsage},
		{[]string{"--bogus"}, exitUsage},
		{[]string{"--bandwidth", "fast"}, exitUsage},
		{[]string{"--error-rate", "2"}, exitUsage},
		{[]string{"--stall-rate", "1.5"}, exitUsage},
		{[]string{"--stall-headers-rate", "-1"}, exitUsage},
		{[]string{"--stall-for", "soon"}, exitUsage},
		{[]string{"publish"}, exitUsage},
		{[]string{"add-job", "--url", "http://127.0.0.1:1", "--api-key", "k"}, exitUsage},
		{[]string{"publish", "--help"}, exitOK},
	} {
		var out, errb bytes.Buffer
		if got := runEmulator(tc.args, &out, &errb); got != tc.code {
			t.Errorf("%v: exit %d, want %d (%s)", tc.args, got, tc.code, errb.String())
		}
	}
}

// --frozen: connections are accepted and nothing is answered until PUT /_emulator/faults thaws it.
func TestEmulatorFrozenFlag(t *testing.T) {
	url, key, _, stop := startEmulatorCommand(t, "--listen", "127.0.0.1:0", "--frozen")
	get := func(timeout time.Duration) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, url+"/api/v2/jobs/", nil)
		req.Header.Set("Authorization", "Token "+key)
		resp, err := (&http.Client{Timeout: timeout}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(300 * time.Millisecond); err == nil {
		t.Fatalf("a frozen emulator answered %d", code)
	}
	req, _ := http.NewRequest(http.MethodPut, url+"/_emulator/faults", strings.NewReader("{}"))
	req.Header.Set("Authorization", "Token "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, err := get(10 * time.Second); err != nil || code != http.StatusOK {
		t.Fatalf("after the thaw: %d %v", code, err)
	}
	stop()
}
