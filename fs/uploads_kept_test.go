package fs_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// answersLost is put in front of the emulator (fusetest.PlatformOptions.Wrap): publishing requests
// (a small upload, POST /api/v2/files/contents/; a registration, POST /api/v3/files/) reach it, and
// the file is published, but their answer never leaves: lost, as to a crash of the mount. The
// request ends when its client gives up (the engine closed).
type answersLost struct {
	stored atomic.Int32
}

func (a *answersLost) wrap(emu *emulator.Emulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !publishing(r) {
			emu.ServeHTTP(w, r)
			return
		}
		publishUnanswered(emu, r, &a.stored)
		<-r.Context().Done()
	})
}

// publishing reports whether r is a publishing request: a small upload (POST
// /api/v2/files/contents/) or a registration (POST /api/v3/files/).
func publishing(r *http.Request) bool {
	return r.Method == http.MethodPost && (r.URL.Path == "/api/v2/files/contents/" || r.URL.Path == "/api/v3/files/")
}

// publishUnanswered has emu handle r without its answer reaching the client yet: the answer is
// returned, and stored counts r when it published.
func publishUnanswered(emu *emulator.Emulator, r *http.Request, stored *atomic.Int32) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	emu.ServeHTTP(rec, r)
	if rec.Code/100 == 2 {
		stored.Add(1)
	}
	return rec
}

// TestStatusKept: a file removed from uploads/ while its (small) publishing request is out, whose
// answer is then lost (the mount stops); another tool uploads the same bytes under the same name
// before the next mount. The next mount looks for the lost publication and finds both files, which
// nothing tells apart: it deletes neither, and .rescalefs/status lists both as kept, by the path
// files/ shows each at (the newer under its name, the other beside it with its id). Before, they
// were only in the log.
func TestStatusKept(t *testing.T) {
	lost := &answersLost{}
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{Wrap: lost.wrap})
	dir := t.TempDir()
	o := fusetest.Options{Uploads: fusetest.UploadOptions{Enabled: true, Dir: dir}}
	env := fusetest.MountOn(t, p, o, fusetest.MountExtra{})
	data := testutil.RandomBytes(150, 2222)
	path := filepath.Join(env.Dir, "uploads", "kept.txt")
	writeFile(t, path, data)
	env.Mount.SettleUploads()
	fusetest.Eventually(t, 30*time.Second, "the publishing request stored the file", func() bool {
		return lost.stored.Load() == 1
	})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if st := readStatus(t, env); len(st.Kept) != 0 {
		t.Fatalf("kept before anything was looked for: %+v", st.Kept)
	}
	// The mount stops (the shutdown order of cmd/rescalefs/life.go); the answer is lost.
	fusetest.Unmount(t, env.Mount, env.Dir)
	env.Mount.SettleUploads()
	env.Engine.Close()
	env.Mount.WaitUploads()

	// Another tool uploads the same file in the meantime.
	if _, err := p.Emulator().AddLibraryFile("kept.txt", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}

	env = fusetest.MountOn(t, p, o, fusetest.MountExtra{})
	fusetest.Eventually(t, 30*time.Second, "the clean-up done", func() bool {
		st := readStatus(t, env)
		return st.Cleanups == 0 && len(st.Kept) == 2
	})
	if _, err := os.ReadDir(filepath.Join(env.Dir, "files")); err != nil { // lists the library
		t.Fatal(err)
	}
	st := readStatus(t, env)
	seen := map[string]bool{}
	for _, k := range st.Kept {
		if k.Name != "kept.txt" || k.Why == "" || k.Time.IsZero() {
			t.Errorf("kept: %+v", k)
		}
		if seen[k.Path] {
			t.Errorf("two kept files shown at %s", k.Path)
		}
		seen[k.Path] = true
		// The path shown is where the mount shows that very file.
		got, err := os.ReadFile(filepath.Join(env.Dir, k.Path))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("%s: %v (%d bytes)", k.Path, err, len(got))
		}
		buf := make([]byte, 256)
		if n, err := unix.Getxattr(filepath.Join(env.Dir, k.Path), "user.rescale.id", buf); err != nil || string(buf[:n]) != k.FileID {
			t.Errorf("%s is file %q (%v), want %s", k.Path, buf[:max(n, 0)], err, k.FileID)
		}
	}
	if !seen["files/kept.txt"] {
		t.Errorf("kept paths %v, want files/kept.txt among them", seen)
	}
	if n := p.Emulator().Counters().Requests[emulator.EndpointFileDelete]; n != 0 {
		t.Errorf("%d deletions, want 0", n)
	}
}
