package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletionBash sources the bash script into a real bash and asks it what it completes.
func TestCompletionBash(t *testing.T) {
	code, script, stderr := runCmd(t, nil, "completion", "bash")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "rescalefs.bash")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		words []string // the command line so far, the last word being completed
		want  string
	}{
		{[]string{"rescalefs", "mo"}, "mount"},
		{[]string{"rescalefs", "sta"}, "status"},
		{[]string{"rescalefs", "sub"}, "submit"},
		{[]string{"rescalefs", "com"}, "completion"},
		{[]string{"rescalefs", "mount", "--cache-d"}, "--cache-dir"},
		{[]string{"rescalefs", "mount", "--dir"}, "--direct-reads"},
		{[]string{"rescalefs", "status", "--w"}, "--watch"},
		{[]string{"rescalefs", "demo", "--large"}, "--large-size"},
		{[]string{"rescalefs", "emulator", "--sample-j"}, "--sample-jobs"},
		{[]string{"rescalefs", "completion", "fi"}, "fish"},
	} {
		words := strings.Join(tc.words, " ")
		probe := `source "$1"; COMP_WORDS=(` + words + `); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _rescalefs; echo "${COMPREPLY[*]}"`
		out, err := exec.Command("bash", "-c", probe, "bash", path).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("%q completes to %q (%v), want %q", words, out, err, tc.want)
		}
	}
	// `complete -p` shows the function registered for rescalefs.
	out, err := exec.Command("bash", "-c", `source "$1"; complete -p rescalefs`, "bash", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-F _rescalefs rescalefs") {
		t.Fatalf("complete -p: %v: %s", err, out)
	}
}

// TestCompletionScripts: every shell's script names every command and each command's flags, and a
// wrong shell is a usage error.
func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		code, script, _ := runCmd(t, nil, "completion", shell)
		if code != exitOK {
			t.Fatalf("%s: code %d", shell, code)
		}
		for _, c := range completionCommands() {
			if !strings.Contains(script, c.Name) {
				t.Errorf("%s script lacks command %s", shell, c.Name)
			}
			for _, f := range c.Flags {
				want := "--" + f.Long
				if shell == "fish" {
					want = "-l " + f.Long
				}
				if !strings.Contains(script, want) {
					t.Errorf("%s script lacks %s's flag %s", shell, c.Name, want)
				}
			}
		}
	}
	var mount complCommand
	for _, c := range completionCommands() {
		if c.Name == "mount" {
			mount = c
		}
	}
	if len(mount.Flags) < 15 {
		t.Fatalf("mount's flags were not read from its help: %+v", mount.Flags)
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}} {
		if code, _, _ := runCmd(t, nil, args...); code != exitUsage {
			t.Errorf("%q: code %d, want %d", args, code, exitUsage)
		}
	}
	// zsh runs completion functions only inside its line editor, so the zsh script is checked for
	// syntax here (bash and fish complete for real in the tests above and below).
	_, script, _ := runCmd(t, nil, "completion", "zsh")
	if out, err := exec.Command("zsh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Errorf("zsh -n: %v (.ci/run installs zsh): %s", err, out)
	}
}

// TestCompletionFish sources the fish script into a real fish and asks it what it completes
// (`complete -C`, which prints each candidate and its description).
func TestCompletionFish(t *testing.T) {
	code, script, stderr := runCmd(t, nil, "completion", "fish")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
	path := filepath.Join(t.TempDir(), "rescalefs.fish")
	if err := os.WriteFile(path, []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		line string // the command line so far, the last word being completed
		want string // the only candidate
	}{
		{"rescalefs mo", "mount"},
		{"rescalefs sta", "status"},
		{"rescalefs sub", "submit"},
		{"rescalefs com", "completion"},
		{"rescalefs mount --cache-d", "--cache-dir"},
		{"rescalefs mount --dir", "--direct-reads"},
		{"rescalefs status --w", "--watch"},
		{"rescalefs demo --large", "--large-size"},
		{"rescalefs emulator --sample-j", "--sample-jobs"},
		{"rescalefs completion fi", "fish"},
	} {
		// -N: no config files of the machine's user; the line is passed as an argument, not quoted
		// into the script.
		out, err := exec.Command("fish", "-N", "-c", `source $argv[1]; complete -C $argv[2]`, path, tc.line).CombinedOutput()
		var got []string
		for line := range strings.Lines(string(out)) {
			candidate, _, _ := strings.Cut(strings.TrimRight(line, "\n"), "\t")
			got = append(got, candidate)
		}
		if err != nil || len(got) != 1 || got[0] != tc.want {
			t.Errorf("%q completes to %q (%v), want %q", tc.line, got, err, tc.want)
		}
	}
	// A command's flags are not offered for another command.
	out, err := exec.Command("fish", "-N", "-c", `source $argv[1]; complete -C $argv[2]`, path, "rescalefs status --cache-d").CombinedOutput()
	if err != nil || strings.Contains(string(out), "--cache-dir") {
		t.Errorf("status offers mount's --cache-dir (%v): %s", err, out)
	}
}
