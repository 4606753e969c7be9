package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindMount(t *testing.T) {
	info := `22 1 0:21 / /proc rw,nosuid - proc proc rw
36 35 98:0 / /tmp/with\040space rw,noatime master:1 - fuse.rescalefs rescalefs rw
37 35 98:0 / /tmp/stacked rw - ext4 /dev/vda rw
38 37 0:50 / /tmp/stacked rw - fuse.rescalefs rescalefs rw
`
	for _, tc := range []struct {
		dir, wantType string
		wantOK        bool
	}{
		{"/tmp/with space", "fuse.rescalefs", true},
		{"/tmp/stacked", "fuse.rescalefs", true},
		{"/proc", "proc", true},
		{"/tmp", "", false},
		{"/tmp/with", "", false},
	} {
		got, ok := findMount(strings.NewReader(info), tc.dir)
		if got != tc.wantType || ok != tc.wantOK {
			t.Errorf("findMount(%q) = %q, %v; want %q, %v", tc.dir, got, ok, tc.wantType, tc.wantOK)
		}
	}
}

func TestCheckMountpoint(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	full := filepath.Join(dir, "full")
	file := filepath.Join(dir, "file")
	for _, d := range []string{empty, full} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(full, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, wantErr string }{
		{empty, ""},
		{full, "is not empty"},
		{file, "is not a directory"},
		{filepath.Join(dir, "missing"), "does not exist"},
		{"/proc", "already mounted"},
	} {
		_, err := checkMountpoint(tc.dir)
		if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("checkMountpoint(%s) = %v, want error %q", tc.dir, err, tc.wantErr)
		}
	}
}
