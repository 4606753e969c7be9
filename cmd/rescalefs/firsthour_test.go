package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

func TestFormatVersion(t *testing.T) {
	settings := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name             string
		linkVer, linkRev string
		info             *debug.BuildInfo
		want             string
	}{
		{"checkout build", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs.revision", rev, "vcs.modified", "false")}, "(devel) (revision " + rev + ", go1.26.8)"},
		{"modified checkout", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs.revision", rev, "vcs.modified", "true")}, "(devel) (revision " + rev + ", modified, go1.26.8)"},
		{"go install of a tag", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.4.0"}}, "v1.4.0 (go1.26.8)"},
		{"release ldflags win", "v2.0.0", "abc123", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: settings("vcs.revision", rev, "vcs.modified", "true")}, "v2.0.0 (revision abc123, go1.26.8)"},
		{"no VCS stamp says why", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"(devel) (no VCS revision: built outside a git clone, from a linked worktree or with -buildvcs=false, go1.26.8)"},
		{"no build info", "", "", nil, "(devel) (no VCS revision: built outside a git clone, from a linked worktree or with -buildvcs=false)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatVersion(tc.linkVer, tc.linkRev, tc.info); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestBadFlagValuesAreUsageErrors: a flag value that cannot work is exit 2 with one line, before any
// network or mount, for mount and demo alike.
func TestBadFlagValuesAreUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"mount", "--log-level", "loud", "x"}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"demo", "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"mount", "--poll", "0s", "x"}, "--poll 0s: want at least 1s"},
		{[]string{"mount", "--max-job-age", "-1", "x"}, "--max-job-age -1"},
		{[]string{"status", "--interval", "0s"}, "positive --interval"},
		{[]string{"demo", "--latency", "-1s"}, "--latency must not be negative"},
		{[]string{"demo", "--large-size", "0"}, "--large-size must be positive"},
		{[]string{"emulator", "--latency", "-1s"}, "must not be negative"},
		{[]string{"emulator", "--job-duration", "-5s"}, "must not be negative"},
		{[]string{"mount", "--metrics", "0.0.0.0:9464", "x"}, "only a loopback address"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, stderr := runCmd(t, nil, tc.args...)
			if code != exitUsage || !strings.Contains(stderr, tc.wantErr) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Fatalf("code %d, stderr %q; want %d and one line with %q", code, stderr, exitUsage, tc.wantErr)
			}
		})
	}
}

// TestLogLinesAreOneLine: an error carrying a program's output (fusermount3's "\n (code exit status
// 1)\n") is logged on one line with no literal \n.
func TestLogLinesAreOneLine(t *testing.T) {
	var buf bytes.Buffer
	logger, err := newLogger(&buf, "info")
	if err != nil {
		t.Fatal(err)
	}
	unmountErr := errors.New("unmount /home/u/rescale: fusermount3: failed to unmount /home/u/rescale: Device or resource busy\n (code exit status 1)\n")
	logger.With("mount", "a\nb").Warn("unmount failed;\n detaching lazily", "err", unmountErr, slog.Group("g", "detail", "x\ty"))
	line := buf.String()
	if strings.Count(line, "\n") != 1 || strings.Contains(line, `\n`) || strings.Contains(line, `\t`) {
		t.Fatalf("not one clean line: %q", line)
	}
	for _, want := range []string{"busy (code exit status 1)", `msg="unmount failed; detaching lazily"`, `mount="a b"`, `g.detail="x y"`} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
}

// TestUnreachableURLNamedOnce: "cannot reach URL: URL: GET ..." said the URL twice.
func TestUnreachableURLNamedOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + l.Addr().String()
	l.Close()
	code, _, stderr := runCmd(t, map[string]string{"RESCALE_API_KEY": "k-0123456789", "RESCALE_API_URL": closedURL}, "mount", "-f", t.TempDir())
	if code != exitFailure || strings.Count(stderr, closedURL) != 1 || !strings.Contains(stderr, "cannot reach "+closedURL+": GET /api/v2/jobs/") {
		t.Fatalf("code %d, stderr %q: want the URL named once", code, stderr)
	}
}

// TestSilentPlatformGetsAStillWaitingLine: a URL that accepts connections and never answers is
// reported after stillWaitingAfter, not after the whole authCheckTimeout of silence.
func TestSilentPlatformGetsAStillWaitingLine(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	var mu sync.Mutex // guards open
	var open []net.Conn
	conns.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c) // held, never answered
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		l.Close()
		conns.Wait()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	url := "http://" + l.Addr().String()
	client, err := remote.New(remote.Options{BaseURL: url, APIKey: "k-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	var progress syncBuffer // written by the key check's timer goroutine, read by the test
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- checkKey(ctx, client, url, 0, &progress) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(progress.String(), "still waiting for "+url) {
		select {
		case err := <-done:
			t.Fatalf("the check ended (%v) before saying it was waiting; progress %q", err, progress.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no still-waiting line; progress %q", progress.String())
		}
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("the check succeeded against a silent platform")
	}
	if strings.Count(progress.String(), "\n") != 1 {
		t.Fatalf("want one progress line, got %q", progress.String())
	}
}

func TestAPIConfigWarnings(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const secret = "s3cr3t-value-never-shown"
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		name   string
		path   string
		getenv func(string) string
		want   []string // substrings, one warning each, in order
	}{
		{"apiurl is named and pointed to apibaseurl",
			write("typo", "[default]\napikey = "+secret+"\napiurl = https://"+secret+".rescale.com\n", 0o600), noEnv,
			[]string{`[default] has an unknown key "apiurl", ignored (the platform URL's key is apibaseurl)`}},
		{"readable by others",
			write("open", "[default]\napikey = "+secret+"\n", 0o644), noEnv,
			[]string{"is readable by others (mode 0644): chmod 600"}},
		{"both", write("both", "[default]\napikey = "+secret+"\ncolour = blue\n", 0o640), noEnv,
			[]string{`unknown key "colour", ignored`, "readable by others (mode 0640)"}},
		{"a readable file whose key is not used is not about the key",
			write("unused", "[default]\napikey = "+secret+"\n", 0o644), func(k string) string {
				if k == "RESCALE_API_KEY" {
					return "envkey"
				}
				return ""
			}, nil},
		{"clean file", write("clean", "[default]\napikey = "+secret+"\napibaseurl = https://eu.rescale.com\n", 0o600), noEnv, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := resolveCredentials(credentialInputs{Getenv: tc.getenv, ConfigPath: tc.path})
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Warnings) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", c.Warnings, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(c.Warnings[i], w) {
					t.Errorf("warning %q lacks %q", c.Warnings[i], w)
				}
				if strings.Contains(c.Warnings[i], secret) {
					t.Fatalf("warning shows a value: %q", c.Warnings[i])
				}
			}
		})
	}

	// And the mount command prints them, one line each, before it fails on the (absent) platform.
	home := t.TempDir()
	cfgDir := filepath.Join(home, ".config", "rescale")
	if err := os.MkdirAll(cfgDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfgDir, "apiconfig"), []byte("[default]\napikey = "+secret+"\napiurl = http://127.0.0.1:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	t.Setenv("RESCALE_API_KEY", "")
	t.Setenv("RESCALE_API_URL", "")
	var out, errb bytes.Buffer
	run([]string{"mount", "-f", "--api-url", "http://127.0.0.1:1", t.TempDir()}, &out, &errb)
	for _, want := range []string{`rescalefs mount: warning: ` + filepath.Join(cfgDir, "apiconfig") + `: [default] has an unknown key "apiurl"`, "readable by others"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stderr %q lacks %q", errb.String(), want)
		}
	}
	if strings.Contains(errb.String(), secret) {
		t.Fatal("stderr shows a config value")
	}
}

// TestDemoHelpCacheDir: the demo uses a private cache unless told otherwise, and its help says so
// instead of showing the mount's default.
func TestDemoHelpCacheDir(t *testing.T) {
	code, stdout, _ := runCmd(t, nil, "demo", "--help")
	if code != exitOK || !strings.Contains(stdout, "default: a private temporary folder") || strings.Contains(stdout, defaultCacheDir()) {
		t.Fatalf("code %d, help %q", code, stdout)
	}
}
