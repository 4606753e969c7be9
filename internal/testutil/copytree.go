package testutil

import (
	"io/fs"
	"os"
	"path/filepath"
)

// CopyTree copies the folder src to dst (made if missing), keeping the layout: files 0600, folders
// 0700. The crash tests take what a crash would leave of an engine's folder with it. It returns an
// error rather than failing a test, so that hooks running outside the test's goroutine can call it.
func CopyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
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
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	})
}
