package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repoRoot is the module's root, where the README's commands run.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
	return root
}

// readmeBlock returns the lines of the first ``` block of README.md after the line containing marker.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(b), marker)
	if !ok {
		t.Fatalf("README.md has no %q", marker)
	}
	_, after, ok = strings.Cut(after, "```\n")
	block, _, ok2 := strings.Cut(after, "```")
	if !ok || !ok2 {
		t.Fatalf("README.md has no code block after %q", marker)
	}
	return strings.Split(strings.TrimSpace(block), "\n")
}

// readmeCommand strips a README line's trailing comment.
func readmeCommand(line string) string {
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// installRescalefs runs the README's install line that builds the binary, with GOBIN in a temporary
// folder, and returns that folder: what a new user puts on PATH.
func installRescalefs(t *testing.T) string {
	t.Helper()
	var install string
	for _, l := range readmeBlock(t, "Install first") {
		if c := readmeCommand(l); strings.HasPrefix(c, "go install ") {
			install = c
		}
	}
	if install == "" {
		t.Fatal("the README's install block has no go install line")
	}
	gobin := t.TempDir()
	cmd := exec.Command("bash", "-c", install)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", install, err, out)
	}
	if _, err := os.Stat(filepath.Join(gobin, "rescalefs")); err != nil {
		t.Fatalf("%s did not put rescalefs in GOBIN: %v", install, err)
	}
	return gobin
}

// TestReadmeFirstHour does what the README tells a new user: install, then `rescalefs demo` from PATH
// in a scratch HOME and folder; every path of the demo's tour and every line of the README's demo
// block works against the mount.
func TestReadmeFirstHour(t *testing.T) {
	for _, l := range readmeBlock(t, "Install first") {
		if c := readmeCommand(l); strings.HasPrefix(c, "sudo apt-get install") {
			// The packages are the CI's too: each one's program must be here (the tests use them).
			for _, pkg := range strings.Fields(strings.TrimPrefix(c, "sudo apt-get install -y")) {
				prog := map[string]string{"fuse3": "fusermount3", "attr": "getfattr", "systemd": "systemd-analyze"}[pkg]
				if prog == "" {
					prog = pkg
				}
				if _, err := exec.LookPath(prog); err != nil {
					t.Errorf("README installs %s, but %s is not on PATH: %v", pkg, prog, err)
				}
			}
		}
	}
	gobin := installRescalefs(t)
	home := t.TempDir()
	work := t.TempDir()
	env := append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME=", "XDG_STATE_HOME=", "RESCALE_API_KEY=", "RESCALE_API_URL=",
		"PATH="+gobin+string(os.PathListSeparator)+os.Getenv("PATH"))
	sh := func(line string) *exec.Cmd {
		c := exec.Command("bash", "-c", line)
		c.Dir, c.Env = work, env
		return c
	}
	if out, err := sh("rescalefs version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "rescalefs ") {
		t.Fatalf("rescalefs version from PATH: %v: %s", err, out)
	}

	var demoLine string
	for _, l := range readmeBlock(t, "Then:") {
		if c := readmeCommand(l); strings.HasPrefix(c, "rescalefs demo") {
			demoLine = c
		}
	}
	if demoLine == "" {
		t.Fatal("the README has no rescalefs demo line")
	}
	mnt := filepath.Join(work, "rescale-demo")
	noMountsLeftUnder(t, mnt)
	demo := sh("exec " + demoLine)
	var stderr bytes.Buffer
	tour, _, done := startDemo(t, demo, &stderr, 2*time.Minute)
	// The tour is printed relative to the folder the demo was started in.
	abs := make([]string, len(tour))
	for i, l := range tour {
		abs[i] = strings.ReplaceAll(l, "rescale-demo/", mnt+"/")
	}
	checkTour(t, mnt, abs)
	// The tour's upload, as printed, from the demo's folder with the installed rescalefs: status --watch
	// returns once the platform has the file, which then shows in files/.
	for _, prefix := range []string{"cp /etc/os-release ", "rescalefs status --watch "} {
		var line string
		for _, l := range tour {
			if strings.HasPrefix(l, prefix) {
				line = l
			}
		}
		if line == "" {
			t.Fatalf("no tour line starts with %q: %q", prefix, tour)
		}
		if out, err := sh(line).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", line, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(mnt, "files", "os-release")); err != nil {
		t.Errorf("after the tour's upload and status --watch, files/os-release: %v", err)
	}

	// The README's demo block, line by line, from the same folder; cp writes into a scratch folder.
	dst := t.TempDir()
	for _, l := range readmeBlock(t, "The demo's sample set is the same every time") {
		c := readmeCommand(l)
		if strings.HasPrefix(c, "tail -F ") {
			// Follows forever: the running job's folder must exist (its log appears when its run starts).
			p := strings.Fields(c)[2]
			if _, err := os.Stat(filepath.Join(work, filepath.Dir(p))); err != nil {
				t.Errorf("%s: %v", c, err)
			}
			continue
		}
		c = strings.ReplaceAll(c, " /tmp/", " "+dst+"/")
		out, err := sh(c).CombinedOutput()
		if err != nil || (len(bytes.TrimSpace(out)) == 0 && !strings.HasPrefix(c, "cp ")) {
			t.Errorf("README line %q: %v, output %q", l, err, out)
		}
	}
	if entries, err := os.ReadDir(dst); err != nil || len(entries) == 0 {
		t.Errorf("the README's cp -r copied nothing: %v", err)
	}

	stopDemo(t, demo, done, &stderr, 30*time.Second)
	if strings.Contains(stderr.String(), `\n`) {
		t.Errorf("the demo's log has a literal \\n: %s", stderr.String())
	}
}
