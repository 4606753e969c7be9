package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// mountType is how /proc/mounts shows our mounts (go-fuse's Name option): unmount only touches these.
const mountType = "fuse.rescalefs"

// checkMountpoint refuses what would surprise a user: a missing folder, a file, a folder already mounted
// (mounting over a mount hides it), or a non-empty folder (mounting over files hides them).
func checkMountpoint(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.ECONNABORTED) {
		// A mount whose process died (kill -9, a crash): the kernel keeps it until it is unmounted. A
		// stat answers ENOTCONN, or ECONNABORTED while the kernel is still aborting the connection's
		// requests (right after the kill).
		if fstype, ok := mountedAt(abs); ok && fstype == mountType {
			if uerr := unmount(abs); uerr != nil {
				return "", fmt.Errorf("mountpoint %s is a rescalefs mount whose process has ended, and unmounting it failed (%v); run: rescalefs unmount %s", abs, uerr, abs)
			}
			fi, err = os.Stat(abs)
		} else {
			return "", fmt.Errorf("mountpoint %s: %w: a mount whose process has ended; unmount it first (fusermount3 -u %s)", abs, err, abs)
		}
	}
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("mountpoint %s does not exist (create it with mkdir -p)", abs)
	case err != nil:
		return "", fmt.Errorf("mountpoint %s: %w", abs, err)
	case !fi.IsDir():
		return "", fmt.Errorf("mountpoint %s is not a directory", abs)
	}
	if fstype, ok := mountedAt(abs); ok {
		return "", fmt.Errorf("mountpoint %s is already mounted (%s); unmount it first", abs, fstype)
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", fmt.Errorf("mountpoint %s: %w", abs, err)
	}
	defer f.Close()
	if names, _ := f.Readdirnames(1); len(names) > 0 {
		return "", fmt.Errorf("mountpoint %s is not empty", abs)
	}
	return abs, nil
}

// mountedAt reports whether something is mounted exactly at dir, and its type, from /proc/self/mountinfo.
func mountedAt(dir string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	return findMount(f, dir)
}

// findMount parses mountinfo lines: "36 35 98:0 /mnt1 /mnt/point rw,noatime master:1 - fuse.rescalefs src opts".
// Field 5 is the mount point with spaces and other bytes escaped as octal (\040); the type follows " - ".
func findMount(r io.Reader, dir string) (string, bool) {
	fstype := ""
	found := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || unescapeMountinfo(fields[4]) != dir {
			continue
		}
		// The last mount at a path is the visible one.
		found, fstype = true, ""
		for i, f := range fields {
			if f == "-" && i+1 < len(fields) {
				fstype = fields[i+1]
			}
		}
	}
	return fstype, found
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmount detaches a FUSE mount: umount(2) when we may (root), else fusermount3 -u, as an ordinary user must.
func unmount(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	fstype, ok := mountedAt(abs)
	if !ok {
		return fmt.Errorf("%s is not mounted", abs)
	}
	// Never unmount what is not ours: `rescalefs unmount /` as root must not take the system down.
	if fstype != mountType {
		return fmt.Errorf("%s is not a rescalefs mount (it is %s)", abs, fstype)
	}
	err = syscall.Unmount(abs, 0)
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("%s is busy: a program still has a file or folder open there (see: fuser -vm %s)", abs, abs)
	}
	out, ferr := exec.Command("fusermount3", "-u", abs).CombinedOutput()
	if ferr != nil {
		return fmt.Errorf("unmount %s: %v; fusermount3: %s", abs, err, strings.TrimSpace(string(out)))
	}
	return nil
}
