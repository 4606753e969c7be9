package fusetest

import (
	"crypto/sha512"
	"encoding/hex"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// ReadThroughMount reads a whole file after asking the kernel to drop its cached pages of it, so the
// read reaches rescalefs (FOPEN_KEEP_CACHE would otherwise serve it from the page cache), and returns
// the sha512 (hex) of what it read.
func ReadThroughMount(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise: %v", err)
	}
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
