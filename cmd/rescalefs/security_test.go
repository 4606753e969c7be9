package main

// The bad input and security catalogue of issue 5 that run_test.go and e2e_test.go do not already
// cover: empty keys from each source, the key kept out of the command line, logs, errors and status
// whatever its source (with a warning for --api-key), an unwritable cache folder, and the privacy of
// the cache, staging and journal files.

import (
	"bytes"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestEmptyKeyIsRefused: a key that is empty or blank, from any source, is "no API key", before any
// request is made (the URL is a closed port, so going further would fail differently).
func TestEmptyKeyIsRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedURL := "http://" + l.Addr().String()
	l.Close()
	mnt := t.TempDir()
	for _, tc := range []struct {
		name   string
		env    map[string]string
		config string // apiconfig content, "" = none
		args   []string
	}{
		{name: "empty flag", env: map[string]string{"RESCALE_API_URL": closedURL}, args: []string{"--api-key", ""}},
		{name: "blank flag", env: map[string]string{"RESCALE_API_URL": closedURL}, args: []string{"--api-key", "   "}},
		{name: "blank environment", env: map[string]string{"RESCALE_API_KEY": " \t ", "RESCALE_API_URL": closedURL}},
		{name: "empty in config file", env: map[string]string{"RESCALE_API_URL": closedURL}, config: "[default]\napikey =\n"},
		{name: "blank quoted in config file", env: map[string]string{"RESCALE_API_URL": closedURL}, config: "[default]\napikey = \"  \"\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			if tc.config != "" {
				home := t.TempDir()
				writeAPIConfig(t, home, tc.config)
				env["HOME"] = home
			}
			args := append(append([]string{"mount", "-f"}, tc.args...), mnt)
			code, stdout, stderr := runCmd(t, env, args...) // env's HOME, if any, wins over runCmd's
			if code != exitFailure || !strings.Contains(stderr, "no API key") {
				t.Fatalf("code %d, stdout %q, stderr %q; want %d and \"no API key\"", code, stdout, stderr, exitFailure)
			}
		})
	}
}

func writeAPIConfig(t *testing.T, home, content string) {
	t.Helper()
	dir := filepath.Join(home, ".config", "rescale")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "apiconfig"), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestKeyNeverShown mounts in the background with the key from each source and looks for it everywhere
// a user or another user could see it: the mount process's command line, the log, the status file,
// `rescalefs status`, the mount command's output. A key passed with --api-key draws a warning (the
// parent's own command line shows it, which nothing can prevent) but still stays off the child's.
// With the config-file key the mount also reads, uploads, and then the cache folder is checked private:
// folders 0700, files 0600 (blocks, staging, journal, lock).
func TestKeyNeverShown(t *testing.T) {
	emu, url, job := newEmulatorWithJob(t)
	key := emu.APIKey()
	for _, source := range []string{"environment", "config file", "flag"} {
		t.Run(source, func(t *testing.T) {
			home := t.TempDir()
			mnt := filepath.Join(t.TempDir(), "mnt")
			if err := os.Mkdir(mnt, 0o755); err != nil {
				t.Fatal(err)
			}
			cacheDir := filepath.Join(t.TempDir(), "cache")
			logFile := filepath.Join(home, "state", "rescalefs", "rescalefs.log")
			noMountsLeftUnder(t, mnt)
			env := []string{"HOME=" + home, "XDG_STATE_HOME=" + filepath.Join(home, "state")}
			args := []string{"mount", "--cache-dir", cacheDir, "--poll", "1s"}
			switch source {
			case "environment":
				env = append(env, "RESCALE_API_KEY="+key, "RESCALE_API_URL="+url)
			case "config file":
				writeAPIConfig(t, home, "[default]\napikey = "+key+"\napibaseurl = "+url+"\n")
			case "flag":
				args = append(args, "--api-key", key, "--api-url", url)
			}
			cmd := rescalefsCmd(t, env, append(args, mnt)...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("mount: %v: %s%s", err, stdout.String(), stderr.String())
			}
			m := regexp.MustCompile(`\(pid (\d+),`).FindStringSubmatch(stdout.String())
			if m == nil {
				t.Fatalf("mount output %q names no pid", stdout.String())
			}
			pid, _ := strconv.Atoi(m[1])
			t.Cleanup(func() { waitGone(t, pid) })
			t.Cleanup(func() {
				if _, ok := mountedAt(mnt); ok {
					if out, err := rescalefsCmd(t, nil, "unmount", mnt).CombinedOutput(); err != nil {
						t.Errorf("unmount: %v: %s", err, out)
					}
				}
			})
			warned := strings.Contains(stderr.String(), "--api-key is visible")
			if warned != (source == "flag") {
				t.Errorf("warning about --api-key shown: %v, want %v (stderr %q)", warned, source == "flag", stderr.String())
			}

			// Use the mount: reads, an upload (staging and journal), the status file.
			for _, f := range job.Files {
				if got := fileSHA512(t, filepath.Join(mnt, "jobs", job.ID, filepath.FromSlash(f.RelativePath))); got != f.SHA512 {
					t.Errorf("%s: wrong bytes", f.RelativePath)
				}
			}
			up := filepath.Join(mnt, "uploads", "secret-check.txt")
			if err := os.WriteFile(up, bytes.Repeat([]byte("private data\n"), 1000), 0o644); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool { _, err := os.Stat(filepath.Join(mnt, "files", "secret-check.txt")); return err == nil })
			status, err := os.ReadFile(filepath.Join(mnt, ".rescalefs", "status"))
			if err != nil {
				t.Fatal(err)
			}
			statusCmd, err := rescalefsCmd(t, env, "status", mnt).CombinedOutput()
			if err != nil {
				t.Fatalf("rescalefs status: %v: %s", err, statusCmd)
			}
			cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			if out, err := rescalefsCmd(t, nil, "unmount", mnt).CombinedOutput(); err != nil {
				t.Fatalf("unmount: %v: %s", err, out)
			}
			waitGone(t, pid)
			logText, err := os.ReadFile(logFile)
			if err != nil {
				t.Fatalf("log: %v", err)
			}
			for what, text := range map[string][]byte{
				"the mount process's command line": cmdline, "the log": logText, "the status file": status,
				"rescalefs status": statusCmd, "the mount command's output": append(stdout.Bytes(), stderr.Bytes()...),
			} {
				if bytes.Contains(text, []byte(key)) {
					t.Errorf("the API key appears in %s", what)
				}
			}
			if !bytes.Contains(logText, []byte("mounted")) {
				t.Errorf("the log file has no trace of the mount: %q", logText)
			}
			checkPrivate(t, cacheDir)
			checkPrivate(t, filepath.Dir(logFile))
		})
	}
}

// checkPrivate walks dir: every folder must be 0700 and every file 0600 (no group or other access).
func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	var files int
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		perm := info.Mode().Perm()
		switch {
		case d.IsDir() && p == dir && perm&0o077 != 0:
			t.Errorf("%s: mode %v, want no group or other access", p, perm)
		case d.IsDir() && p != dir && perm != 0o700:
			t.Errorf("%s: folder mode %v, want 0700", p, perm)
		case !d.IsDir() && perm != 0o600:
			t.Errorf("%s: file mode %v, want 0600", p, perm)
		}
		if !d.IsDir() {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Errorf("%s holds no file: nothing was checked", dir)
	}
}

// TestCacheDirUnwritable: a --cache-dir on a read-only file system stops the mount before anything is
// mounted, with one line naming the folder. A user asked for a cache there; silently serving without it
// (and without anywhere to stage uploads) would surprise them later, so the answer is a clear error.
func TestCacheDirUnwritable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a read-only tmpfs")
	}
	emu, url, _ := newEmulatorWithJob(t)
	ro := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", ro).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", ro).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", ro, err, out)
		}
	})
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}, "mount", "--cache-dir", ro, mnt)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("mount with a read-only cache folder succeeded: %s", stdout.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("mount with a read-only cache folder hangs")
	}
	msg := strings.TrimSpace(stderr.String())
	if !strings.Contains(msg, "cache directory") || !strings.Contains(msg, ro) || strings.Count(msg, "\n") != 0 {
		t.Errorf("want one line naming the cache directory %s, got %q", ro, msg)
	}
	if _, ok := mountedAt(mnt); ok {
		t.Error("mounted despite the unusable cache folder")
	}
}
