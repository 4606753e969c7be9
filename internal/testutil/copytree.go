package testutil

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// CopyTree copies the folder src to dst (made if missing), keeping the layout: files 0600, folders
// 0700. The crash tests take what a crash would leave of an engine's folder with it. It returns an
// error rather than failing a test, so that hooks running outside the test's goroutine can call it.
//
// A file that goes while the folder is walked (an engine working in the background renames its
// journal records into place) is left out, as a crash just after its removal would have left it;
// a test that needs the folder still holds the engine's background work (upload's withdrawHeld).
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) && p != src {
			return nil
		}
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		b, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	})
}
