package jobrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

func TestParseInput(t *testing.T) {
	dir := t.TempDir()
	local := filepath.Join(dir, "build.tar.gz")
	if err := os.WriteFile(local, []byte("b"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A mounted rescalefs: its files/ folder names library files.
	mnt := filepath.Join(dir, "mnt")
	for _, d := range []string{".rescalefs", "files"} {
		if err := os.MkdirAll(filepath.Join(mnt, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(mnt, ".rescalefs", "status"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		in   string
		kind InputKind
		name string
		err  string
	}{
		{"build.tar.gz", InputLocal, "build.tar.gz", ""},
		{local, InputLocal, "build.tar.gz", ""},
		{"files/tests.tar.gz", InputLibrary, "tests.tar.gz", ""},
		{filepath.Join(mnt, "files", "tests.tar.gz"), InputLibrary, "tests.tar.gz", ""},
		{"id:AbC12", InputID, "", ""},
		{"id:", 0, "", "want id:FILEID"},
		{"missing.tar.gz", 0, "", "no such file or directory"},
		{dir, 0, "", "not a regular file"},
	} {
		got, err := ParseInput(tc.in, true)
		if tc.err != "" {
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want a usage error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got.Kind != tc.kind || got.Name != tc.name {
			t.Errorf("%s: %+v %v", tc.in, got, err)
		}
	}
}

// TestInputsReuseOrSend: a local file goes up through the upload engine unless the library holds a file
// of that name with the same bytes; the same input named twice is resolved once.
func TestInputsReuseOrSend(t *testing.T) {
	c, emu := newRunJobsClient(t)
	same, err := emu.AddLibraryFile("same.txt", bytes.NewReader([]byte("same")), 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.AddLibraryFile("other.txt", bytes.NewReader([]byte("old bytes")), 9); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string]string{"same.txt": "same", "other.txt": "new bytes"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in := NewInputs(c)
	eng, err := in.NewUploadEngine(upload.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	parse := func(name string) Input {
		i, err := ParseInput(filepath.Join(dir, name), true)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	r, err := in.Resolve(ctx, parse("same.txt"))
	if err != nil || !r.Reused || r.File.ID != same.ID {
		t.Fatalf("same bytes: %+v %v", r, err)
	}
	r, err = in.Resolve(ctx, parse("other.txt"))
	if err != nil || !r.Sent || r.File.Name != "other.txt" {
		t.Fatalf("changed bytes: %+v %v", r, err)
	}
	if got := emu.Counters().Requests[emulator.EndpointUpload]; got != 1 {
		t.Fatalf("%d uploads, want 1", got)
	}
	if r2, err := in.Resolve(ctx, parse("other.txt")); err != nil || r2.File.ID != r.File.ID {
		t.Fatalf("second resolve: %+v %v", r2, err)
	}
	if got := emu.Counters().Requests[emulator.EndpointUpload]; got != 1 {
		t.Fatalf("resolved twice: %d uploads", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "other.txt")); err != nil {
		t.Fatalf("the upload took the user's file away: %v", err)
	}
}
