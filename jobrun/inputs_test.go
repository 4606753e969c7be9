package jobrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/rescalefs/rescalefs/internal/testutil"
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

// TestInputsStagingPrivate: a local input waiting to be uploaded sits in the engine's folder as a file
// 0600 in 0700 folders, whatever the user's file mode, and the user's file keeps its mode. (A hard link
// of a 0644 file shared its mode: the staging copy was world-readable.)
func TestInputsStagingPrivate(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o600, 0o755} {
		t.Run(mode.String(), func(t *testing.T) {
			c, emu := newRunJobsClient(t)
			// Uploads fail (and are retried) while the test looks at the engine's folder.
			emu.SetFaults(emulator.Faults{ErrorRate: 1, Seed: 1, Endpoints: []string{emulator.EndpointUpload,
				emulator.EndpointMe, emulator.EndpointCredentials, emulator.EndpointRegister,
				emulator.EndpointS3Put, emulator.EndpointS3CreateMultipart, emulator.EndpointS3UploadPart}})
			src := filepath.Join(t.TempDir(), "build.tar.gz")
			if err := os.WriteFile(src, []byte("the build"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(src, mode); err != nil { // past the umask
				t.Fatal(err)
			}
			in := NewInputs(c)
			dir := t.TempDir() // the same filesystem as src: a hard link would work
			eng, err := in.NewUploadEngine(upload.Options{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			i, err := ParseInput(src, true)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { _, err := in.Resolve(ctx, i); done <- err }()
			testutil.Eventually(t, 20*time.Second, "the input queued", func() bool { return eng.Pending() > 0 })
			var files int
			err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				// The engine goes on meanwhile: a file renamed or removed since the folder was read
				// (a journal record's temporary, replaced) is no longer there to look at.
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				if err != nil {
					return err
				}
				fi, err := d.Info()
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				if err != nil {
					return err
				}
				switch perm := fi.Mode().Perm(); {
				case d.IsDir() && perm != 0o700:
					t.Errorf("folder %s is %v, want 0700", p, perm)
				case !d.IsDir() && fi.Mode().IsRegular():
					files++
					if perm != 0o600 {
						t.Errorf("%s is %v, want 0600", p, perm)
					}
				}
				return nil
			})
			if err != nil || files == 0 {
				t.Fatalf("walk: %d files, %v", files, err)
			}
			cancel()
			<-done
			if fi, err := os.Stat(src); err != nil || fi.Mode().Perm() != mode {
				t.Fatalf("the user's file: %v %v, want mode %v", fi.Mode(), err, mode)
			}
		})
	}
}

// noUnlinkStaging is a loopback filesystem on which staging files ("w-...") cannot be removed.
type noUnlinkStaging struct{ *fusefs.LoopbackNode }

func (n *noUnlinkStaging) Unlink(ctx context.Context, name string) syscall.Errno {
	if strings.HasPrefix(name, "w-") {
		return syscall.EIO
	}
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *noUnlinkStaging) WrapChild(_ context.Context, ops fusefs.InodeEmbedder) fusefs.InodeEmbedder {
	return &noUnlinkStaging{ops.(*fusefs.LoopbackNode)}
}

// TestInputsStagingUnlinkFails: when the staging folder refuses to remove a file, the input is still
// uploaded with its own bytes. (The empty staging file was removed to make room for a hard link; when
// the removal failed, the empty file was uploaded instead of the input.)
func TestInputsStagingUnlinkFails(t *testing.T) {
	backing, mnt := t.TempDir(), t.TempDir()
	root, err := fusefs.NewLoopbackRoot(backing)
	if err != nil {
		t.Fatal(err)
	}
	lb := root.(*fusefs.LoopbackNode)
	wrapped := &noUnlinkStaging{lb}
	lb.RootData.RootNode = wrapped
	srv, err := fusefs.Mount(mnt, wrapped, &fusefs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	c, emu := newRunJobsClient(t)
	content := []byte("the tests, not an empty file")
	src := filepath.Join(t.TempDir(), "tests.tar.gz")
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	in := NewInputs(c)
	eng, err := in.NewUploadEngine(upload.Options{Dir: filepath.Join(mnt, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	i, err := ParseInput(src, true)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := in.Resolve(ctx, i)
	if err != nil || r.File.DecryptedSize != int64(len(content)) {
		t.Fatalf("resolved %+v, %v; want the input's %d bytes", r.File, err, len(content))
	}
	var sent int64
	for _, ep := range []string{emulator.EndpointUpload, emulator.EndpointS3Put, emulator.EndpointS3UploadPart} {
		sent += emu.Counters().BytesIn[ep]
	}
	if sent < int64(len(content)) {
		t.Fatalf("%d bytes sent for a %d-byte input", sent, len(content))
	}
}
