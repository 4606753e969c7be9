package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// tmpFallbackDir is where the cache, staging, journal (which holds upload keys) and log go when $HOME is
// unset: a folder in the shared /tmp, which anyone could have created first.
func tmpFallbackDir() string {
	return filepath.Join(os.TempDir(), "rescalefs-"+strconv.Itoa(os.Getuid()))
}

// checkFallback refuses a path under tmpFallbackDir unless that folder is ours and private (checked,
// or created 0700, by checkPrivateDir). Paths elsewhere are the user's choice and pass.
func checkFallback(path string) error {
	base := tmpFallbackDir()
	if path != base && !strings.HasPrefix(path, base+string(filepath.Separator)) {
		return nil
	}
	return checkPrivateDir(base)
}

// checkPrivateDir creates dir 0700 if it does not exist, and otherwise refuses it unless it is a real
// folder (not a symlink) owned by us with no access for anyone else: another user who made it first
// could read our journal and keys, or swap what is inside.
func checkPrivateDir(dir string) error {
	err := os.Mkdir(dir, 0o700)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a folder (%s); $HOME is unset, so rescalefs keeps its files there: remove it or set HOME", dir, fi.Mode().Type())
	case !ok || int(st.Uid) != os.Getuid():
		return fmt.Errorf("%s belongs to another user; $HOME is unset, so rescalefs would keep its files there: set HOME or pass --cache-dir and --log-file", dir)
	case fi.Mode().Perm() != 0o700:
		return fmt.Errorf("%s has mode %v, not 0700; $HOME is unset, so rescalefs keeps its files there: chmod 700 it or set HOME", dir, fi.Mode().Perm())
	}
	return nil
}
