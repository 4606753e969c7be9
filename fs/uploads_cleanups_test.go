package fs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// TestStatusCleanups: .rescalefs/status counts the clean-ups owed on the platform. A file removed
// from uploads/ while its multipart upload is under way leaves that multipart upload to abort; the
// storage refuses every abort (5xx), so the withdrawn upload's clean-up stays, counted, however
// long; once the storage takes aborts again it is done, and the count is back to 0.
func TestStatusCleanups(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{SmallThreshold: -1}})
	// The parts fail too: the upload stays mid-way, its multipart upload created, until the removal.
	env.Emulator.SetFaults(emulator.Faults{ErrorRate: 1,
		Endpoints: []string{emulator.EndpointS3UploadPart, emulator.EndpointS3Abort}})
	path := filepath.Join(env.Dir, "uploads", "withdrawn.bin")
	writeFile(t, path, testutil.RandomBytes(120, testPart+100))
	env.Mount.SettleUploads()
	fusetest.Eventually(t, 30*time.Second, "a failed part", func() bool {
		s := xattrOf(t, path)
		return strings.HasPrefix(s, "retrying: ") || strings.HasPrefix(s, "failed: ")
	})
	if st := readStatus(t, env); st.Cleanups != 0 {
		t.Fatalf("%d clean-ups before the removal, want 0", st.Cleanups)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	select {
	case <-env.Engine.CancelsDone(): // the cancel has tried its abort, and given it to the clean-up
	case <-time.After(time.Minute):
		t.Fatal("the cancel never finished")
	}
	if st := readStatus(t, env); st.Cleanups != 1 {
		t.Fatalf("%d clean-ups while the abort is refused, want 1", st.Cleanups)
	}
	// Still counted while the clean-up's own tries are refused.
	aborts := func() (n int64) {
		for _, c := range env.Emulator.Counters().Statuses[emulator.EndpointS3Abort] {
			n += c
		}
		return n
	}
	tried := aborts()
	fusetest.Eventually(t, 30*time.Second, "the clean-up trying again", func() bool { return aborts() > tried })
	if st := readStatus(t, env); st.Cleanups != 1 {
		t.Fatalf("%d clean-ups while the abort is still refused, want 1", st.Cleanups)
	}

	cleanupsDone(t, env, emulator.EndpointS3Abort, "aborts")
	if n := env.Requests(emulator.EndpointRegister); n != 0 {
		t.Errorf("the removed file was registered %d times", n)
	}
}

// TestStatusCleanupsDeleteRefused: .rescalefs/status counts a withdrawn upload's clean-up while the
// platform refuses to delete what it published. A file removed from uploads/ while its publishing
// request is held (the platform frozen) is withdrawn at once; the request then publishes it all the
// same, and its deletion is refused (5xx) every time: counted as long as it is owed, through the
// clean-up's retries; 0 once the platform takes the deletion.
func TestStatusCleanupsDeleteRefused(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	env.Emulator.SetFrozen(true)
	t.Cleanup(func() { env.Emulator.SetFaults(emulator.Faults{}); env.Emulator.SetFrozen(false) })
	path := filepath.Join(env.Dir, "uploads", "removed.txt")
	writeFile(t, path, testutil.RandomBytes(121, 3000))
	fusetest.Eventually(t, 30*time.Second, "the publishing request held", func() bool {
		return env.Requests(emulator.EndpointUpload) == 1
	})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// The cancel waits a bounded time for the request, then leaves its outcome to the clean-up.
	fusetest.Eventually(t, 30*time.Second, "the withdrawn upload's clean-up counted", func() bool {
		return readStatus(t, env).Cleanups == 1
	})

	// The request publishes the file; every deletion of it is refused.
	env.Emulator.SetFaults(emulator.Faults{Frozen: true, ErrorRate: 1, Endpoints: []string{emulator.EndpointFileDelete}})
	env.Emulator.SetFrozen(false)
	deletes := func() int64 { return env.Requests(emulator.EndpointFileDelete) }
	fusetest.Eventually(t, 30*time.Second, "two refused deletions", func() bool { return deletes() >= 2 })
	if st := readStatus(t, env); st.Cleanups != 1 {
		t.Fatalf("%d clean-ups while the deletion is refused, want 1", st.Cleanups)
	}

	cleanupsDone(t, env, emulator.EndpointFileDelete, "deletions")
	files, err := env.Client.LibraryFiles(fusetest.Context(t), "removed.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !f.IsDeleted {
			t.Errorf("the removed file stays in the library: %+v", f)
		}
	}
	if n := env.Requests(emulator.EndpointUpload); n != 1 {
		t.Errorf("%d publishing requests, want 1", n)
	}
}

// cleanupsDone lifts the faults, waits for the status to count no clean-up left, and checks that the
// platform took exactly one request to endpoint (what names them) to get there.
func cleanupsDone(t *testing.T, env *fusetest.Env, endpoint, what string) {
	t.Helper()
	env.Emulator.SetFaults(emulator.Faults{})
	fusetest.Eventually(t, 30*time.Second, "no clean-up left in the status", func() bool {
		return readStatus(t, env).Cleanups == 0
	})
	if taken := env.Emulator.Counters().Succeeded(endpoint); taken != 1 {
		t.Errorf("%d %s taken, want 1", taken, what)
	}
}
