package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
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

// deadRoot is the root of a mount standing in for one whose process has gone: every stat of it fails
// with errno, as the kernel answers while it tears a dead mount's connection down.
type deadRoot struct {
	fusefs.Inode
	errno syscall.Errno
}

func (r *deadRoot) Getattr(context.Context, fusefs.FileHandle, *fuse.AttrOut) syscall.Errno {
	return r.errno
}

// A rescalefs mount whose process was killed answers a stat with ENOTCONN, or with ECONNABORTED while
// the kernel is still aborting its requests: either way checkMountpoint unmounts it and goes on, so a
// mount right after the kill succeeds. (ECONNABORTED used to fail the mount: "connection aborted".)
func TestCheckMountpointClearsDeadMount(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ENOTCONN, syscall.ECONNABORTED} {
		t.Run(errno.Error(), func(t *testing.T) {
			mnt := t.TempDir()
			zero := time.Duration(0)
			srv, err := fusefs.Mount(mnt, &deadRoot{errno: errno}, &fusefs.Options{
				AttrTimeout: &zero, EntryTimeout: &zero,
				MountOptions: fuse.MountOptions{Name: "rescalefs", FsName: "rescalefs", DirectMount: true},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if _, ok := mountedAt(mnt); ok {
					_ = srv.Unmount()
				}
				srv.Wait()
			})
			if _, err := os.Stat(mnt); !errors.Is(err, errno) {
				t.Fatalf("stat of the stand-in: %v, want %v", err, errno)
			}
			got, err := checkMountpoint(mnt)
			if err != nil || got != mnt {
				t.Fatalf("checkMountpoint = %q, %v; want %q, nil", got, err, mnt)
			}
			if fstype, ok := mountedAt(mnt); ok {
				t.Fatalf("%s is still mounted (%s)", mnt, fstype)
			}
		})
	}
}
