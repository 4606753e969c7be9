package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// runCmd runs the command in-process with a clean credential environment, so the developer's own
// RESCALE_API_KEY or apiconfig cannot leak into a test.
func runCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("RESCALE_API_KEY", "")
	t.Setenv("RESCALE_API_URL", "")
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestRunUsage(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"no args", nil, exitUsage, "", "Usage:"},
		{"help", []string{"--help"}, exitOK, "rescalefs mount", ""},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"version", []string{"version"}, exitOK, "rescalefs ", ""},
		{"mount help", []string{"mount", "--help"}, exitOK, "--cache-dir", ""},
		{"mount bad flag", []string{"mount", "--no-such-flag", "x"}, exitUsage, "", "unknown flag: --no-such-flag"},
		{"mount no mountpoint", []string{"mount"}, exitUsage, "", "want 1 argument(s), got 0"},
		{"mount two mountpoints", []string{"mount", "a", "b"}, exitUsage, "", "want 1 argument(s), got 2"},
		{"mount bad size", []string{"mount", "--memory", "lots", "x"}, exitUsage, "", `invalid size "lots"`},
		{"mount bad block size", []string{"mount", "--block-size", "1MiB", "x"}, exitUsage, "", "outside 4MiB to 16MiB"},
		{"mount memory too small", []string{"mount", "--memory", "100MiB", "x"}, exitUsage, "", "--memory 100MiB is too small for 32 requests of 8MiB in flight (--parallel): want at least 384MiB"},
		{"mount no parallelism", []string{"mount", "--parallel", "-1", "x"}, exitUsage, "", "--parallel -1: want at least 1 (0: the default)"},
		{"mount no upload parallelism", []string{"mount", "--upload-parallel", "0", "x"}, exitUsage, "", "--upload-parallel 0: want at least 1"},
		{"mount poll zero", []string{"mount", "--poll", "0", "x"}, exitUsage, "", "--poll 0s: want at least 1s"},
		{"mount poll negative", []string{"mount", "--poll", "-1s", "x"}, exitUsage, "", "--poll -1s: want at least 1s"},
		{"mount poll absurd", []string{"mount", "--poll", "1ns", "x"}, exitUsage, "", "--poll 1ns: want at least 1s"},
		{"demo poll too small", []string{"demo", "--poll", "10ms"}, exitUsage, "", "--poll 10ms: want at least 1s"},
		{"demo bad block size", []string{"demo", "--block-size", "64MiB"}, exitUsage, "", "rescalefs demo: --block-size 64MiB is outside 4MiB to 16MiB"},
		{"unmount help", []string{"unmount", "--help"}, exitOK, "Usage: rescalefs unmount", ""},
		{"unmount no arg", []string{"unmount"}, exitUsage, "", "want 1 argument(s)"},
		{"unmount not mounted", []string{"unmount", filepath.Join(os.TempDir(), "rescalefs-test-never-mounted")}, exitFailure, "", "is not mounted"},
		{"unmount refuses other filesystems", []string{"unmount", "/proc"}, exitFailure, "", "is not a rescalefs mount (it is proc)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, nil, tc.args...)
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantStdout) || !strings.Contains(stderr, tc.wantStderr) {
				t.Fatalf("code %d, stdout %q, stderr %q; want code %d, stdout with %q, stderr with %q",
					code, stdout, stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
}

// TestMountRefusesBadInput: each bad input fails before anything is mounted, with exit 1 and one line
// that names the problem, and the key appears nowhere in the output.
func TestMountRefusesBadInput(t *testing.T) {
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	notAPI := httptest.NewServer(notRescale{})
	t.Cleanup(notAPI.Close)

	// A loopback port with nothing listening: take one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + l.Addr().String()
	l.Close()

	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	full := filepath.Join(dir, "full")
	for _, d := range []string{empty, full} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(full, "keep.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	const wrongKey = "wrong-key-0123456789"
	good := map[string]string{"RESCALE_API_KEY": emu.APIKey(), "RESCALE_API_URL": srv.URL}
	for _, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"no key", nil, []string{"mount", "-f", empty}, "no API key"},
		{"wrong key", map[string]string{"RESCALE_API_KEY": wrongKey, "RESCALE_API_URL": srv.URL}, []string{"mount", "-f", empty}, "API key was rejected"},
		{"unreachable URL", map[string]string{"RESCALE_API_KEY": wrongKey, "RESCALE_API_URL": closedURL}, []string{"mount", "-f", empty}, "cannot reach"},
		{"not a Rescale API", map[string]string{"RESCALE_API_KEY": wrongKey, "RESCALE_API_URL": notAPI.URL}, []string{"mount", "-f", empty}, "does not answer like a Rescale API"},
		{"http to a remote host", map[string]string{"RESCALE_API_KEY": wrongKey, "RESCALE_API_URL": "http://platform.rescale.com"}, []string{"mount", "-f", empty}, "plain http"},
		{"missing mountpoint", good, []string{"mount", "-f", filepath.Join(dir, "nope")}, "does not exist"},
		{"non-empty mountpoint", good, []string{"mount", "-f", full}, "is not empty"},
		{"already mounted", good, []string{"mount", "-f", "/proc"}, "already mounted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCmd(t, tc.env, tc.args...)
			if code != exitFailure || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("code %d, stderr %q; want %d and %q", code, stderr, exitFailure, tc.wantErr)
			}
			if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 {
				t.Errorf("want one line, got %d: %q", n+1, stderr)
			}
			for _, key := range []string{wrongKey, emu.APIKey()} {
				if strings.Contains(stdout+stderr, key) {
					t.Fatalf("output shows the API key: %q", stdout+stderr)
				}
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(full, "keep.txt")); err != nil || string(b) != "mine" {
		t.Fatalf("a refused mount touched the user's files: %q, %v", b, err)
	}
}

// notRescale is a web server that is not a Rescale API: a URL typo that lands on some other site.
type notRescale struct{}

func (notRescale) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(200)
	_, _ = w.Write([]byte("<html><body>Welcome to nginx!</body></html>"))
}
