package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
	"net/http/httptest"
)

func TestHelperMountArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"profile and our options", []string{"emu", "/mnt/r", "-o", "cache_dir=/var/cache/r,poll=5s,direct_reads,ro,allow_other"},
			[]string{"--profile", "emu", "--cache-dir=/var/cache/r", "--poll=5s", "--direct-reads", "-o", "ro,allow_other", "--", "/mnt/r"}, ""},
		{"default credentials, mount(8) and systemd options dropped", []string{"rescalefs", "/mnt/r", "-o", "rw,noauto,nofail,_netdev,x-systemd.automount,user,dev,suid"},
			[]string{"-o", "rw", "--", "/mnt/r"}, ""},
		{"-oOPTS and several -o", []string{"p", "/mnt/r", "-olog_level=debug", "-o", "memory=1GiB", "-n"},
			[]string{"--profile", "p", "--log-level=debug", "--memory=1GiB", "--", "/mnt/r"}, ""},
		{"no options", []string{"p", "/mnt/r"}, []string{"--profile", "p", "--", "/mnt/r"}, ""},
		{"a key in options is refused", []string{"p", "/mnt/r", "-o", "api_key=secret"}, nil, "never goes in mount options"},
		{"foreground is refused", []string{"p", "/mnt/r", "-o", "foreground"}, nil, "returns once mounted"},
		{"a value-less value flag", []string{"p", "/mnt/r", "-o", "cache_dir"}, nil, "needs a value"},
		{"stray argument", []string{"p", "/mnt/r", "extra"}, nil, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := helperMountArgs(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "secret") {
					t.Fatalf("err %v, want %q (and never the value)", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if isMountHelperCall([]string{"mount", "x"}) || isMountHelperCall([]string{"--help"}) || !isMountHelperCall([]string{"default", "/mnt/r", "-o", "ro"}) {
		t.Fatal("isMountHelperCall misjudges")
	}
	// Bad options are usage errors through run, as mount.fuse3 would call it.
	code, _, stderr := runCmd(t, nil, "default", "/mnt/never", "-o", "api_key=secret")
	if code != exitUsage || strings.Contains(stderr, "secret") {
		t.Fatalf("code %d, stderr %q", code, stderr)
	}
}

// TestMountTypeFuseRescalefs mounts as a system administrator would, through mount(8) and fuse3's
// mount.fuse3 helper (`mount -t fuse.rescalefs PROFILE DIR -o ...`, or the same as an /etc/fstab line),
// with the installed rescalefs on PATH, and unmounts with umount(8).
func TestMountTypeFuseRescalefs(t *testing.T) {
	if _, err := exec.LookPath("mount.fuse3"); err != nil {
		t.Fatalf("fuse3's mount.fuse3 is needed (apt-get install fuse3): %v", err)
	}
	gobin := installRescalefs(t)
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	if _, err := emu.AddJob(emulator.JobSpec{ID: "Fstab1", Name: "mounted by mount", Files: []emulator.FileSpec{{RelativePath: "out/a.dat", Size: 4321}}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)

	home := t.TempDir()
	cfg := filepath.Join(home, ".config", "rescale")
	if err := os.MkdirAll(cfg, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "apiconfig"), []byte("[emu]\napikey = "+emu.APIKey()+"\napibaseurl = "+srv.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(t.TempDir(), "rescale")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	logFile := filepath.Join(home, "rescalefs.log")
	opts := "noauto,nofail,x-systemd.automount,poll=2s,config=" + filepath.Join(cfg, "apiconfig") + ",log_file=" + logFile + ",cache_dir=" + filepath.Join(home, "cache") + ",allow_other"
	// mount(8) runs its helpers with HOME set to the user's own and no PATH, hence config=; and so mount.fuse3's /bin/sh finds rescalefs only in the
	// shell's default PATH (/usr/local/bin, /usr/bin, ...): the installed binary is bind-mounted onto
	// /usr/local/bin in a private mount namespace, which nothing outside this test sees, and which
	// disappears with its processes.
	script := `set -eu
mount --bind "$GOBIN" /usr/local/bin
trap 'umount -l "$MNT" 2>/dev/null || true' EXIT
mount -t fuse.rescalefs emu "$MNT" -o "$OPTS"
echo "type: $(findmnt -n -o FSTYPE "$MNT")"
echo "options: $(findmnt -n -o FS-OPTIONS "$MNT")"
echo "vfs: $(findmnt -n -o VFS-OPTIONS "$MNT")"
echo "size: $(wc -c < "$MNT/jobs/Fstab1/out/a.dat")"
umount "$MNT"
echo "after umount: $(findmnt -n -o FSTYPE "$MNT" || echo none)"
for i in $(seq 400); do grep -q msg=unmounted "$LOG" && break; sleep 0.05; done
grep -c msg=unmounted "$LOG"
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "bash", "-c", script)
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CACHE_HOME=", "XDG_STATE_HOME=", "RESCALE_API_KEY=", "RESCALE_API_URL=",
		"GOBIN="+gobin, "MNT="+mnt, "OPTS="+opts, "LOG="+logFile)
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("mount -t fuse.rescalefs ... umount: %v:\n%s\nlog:\n%s", err, out, log)
	}
	for _, want := range []string{"type: fuse.rescalefs\n", "allow_other", "nosuid,nodev", "size: 4321\n", "after umount: none\n", "\n1\n"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s\nlog:\n%s", want, out, log)
		}
	}
	if bytes.Contains(log, []byte(emu.APIKey())) {
		t.Fatal("the log shows the API key")
	}
}
