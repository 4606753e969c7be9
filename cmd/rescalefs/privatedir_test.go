package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// With $HOME unset, the cache, journal and log go to $TMPDIR/rescalefs-<uid>; a folder of that name
// that another user created first, or that is open to others, is refused, not used.
func TestHomeUnsetRefusesForeignTmpDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, dir string)
		want    string // "" = accepted
	}{
		{"missing: created 0700", func(t *testing.T, dir string) {}, ""},
		{"ours and 0700", func(t *testing.T, dir string) { mkdirMode(t, dir, 0o700) }, ""},
		{"open to others", func(t *testing.T, dir string) { mkdirMode(t, dir, 0o777) }, "not 0700"},
		{"another user's", func(t *testing.T, dir string) {
			if os.Getuid() != 0 {
				t.Skip("chown needs root")
			}
			mkdirMode(t, dir, 0o700)
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "belongs to another user"},
		{"a symlink", func(t *testing.T, dir string) {
			target := t.TempDir()
			if err := os.Symlink(target, dir); err != nil {
				t.Fatal(err)
			}
		}, "is not a folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("HOME", "")
			t.Setenv("TMPDIR", tmp)
			dir := filepath.Join(tmp, "rescalefs-"+strconv.Itoa(os.Getuid()))
			if tmpFallbackDir() != dir {
				t.Fatalf("fallback %s, want %s", tmpFallbackDir(), dir)
			}
			tc.prepare(t, dir)
			err := checkFallback(defaultCacheDir())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if fi, err := os.Lstat(dir); err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
					t.Fatalf("fallback folder %v %v, want a 0700 folder", fi, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkFallback: %v, want %q", err, tc.want)
			}
			// The mount command refuses it too, before it writes anything there.
			mnt := t.TempDir()
			var stdout, stderr bytes.Buffer
			t.Setenv("RESCALE_API_KEY", "k")
			t.Setenv("RESCALE_API_URL", "http://127.0.0.1:1")
			if code := run([]string{"mount", mnt}, &stdout, &stderr); code != exitFailure || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("mount with HOME unset: code %d, stderr %q; want %d and %q", code, stderr.String(), exitFailure, tc.want)
			}
		})
	}
}

func mkdirMode(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}
