package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUserUnit: the shipped unit is valid for systemd (systemd-analyze verify, with the installed
// rescalefs found through its ExecSearchPath), and its ExecStart and ExecStop are command lines
// rescalefs accepts.
func TestSystemdUserUnit(t *testing.T) {
	unitPath := filepath.Join(repoRoot(t), "contrib", "systemd", "rescalefs@.service")
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, l := range strings.Split(string(unit), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
		}
	}
	// The instance as `systemctl --user enable --now rescalefs@default` would make it.
	expand := func(s string) string { return strings.NewReplacer("%i", "default", "%h", "/home/u").Replace(s) }
	start := strings.Fields(expand(keys["ExecStart"]))
	stop := strings.Fields(expand(keys["ExecStop"]))
	if len(start) < 3 || start[0] != "rescalefs" || start[1] != "mount" || len(stop) != 3 || stop[0] != "rescalefs" || stop[1] != "unmount" {
		t.Fatalf("ExecStart %q, ExecStop %q", start, stop)
	}
	var c mountConfig
	fl := newMountFlags(&c)
	if err := fl.Parse(start[2:]); err != nil || fl.NArg() != 1 || !c.foreground || c.profile != "default" || fl.Arg(0) != stop[2] {
		t.Fatalf("ExecStart %q: %v (foreground %v, profile %q, mountpoint %q; ExecStop unmounts %q)", start, err, c.foreground, c.profile, fl.Arg(0), stop[2])
	}

	// systemd-analyze resolves the commands through ExecSearchPath; rescalefs is made visible at
	// /usr/local/bin in a private mount namespace only.
	gobin := installRescalefs(t)
	inst := filepath.Join(t.TempDir(), "rescalefs@default.service")
	if err := os.WriteFile(inst, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c",
		`mount --bind "$GOBIN" /usr/local/bin && systemd-analyze verify "$UNIT"`)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "UNIT="+inst)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v: %s", err, out)
	}
}
