package fs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
	"github.com/rescalefs/rescalefs/upload/writeback"
)

// TestUploadRejectedFailsPermanently (issue 8, defect 2, the follow-up): a file the platform refuses
// with a 4xx that will not change is sent once, then is failed-permanently (the write-back state
// Rejected) in its xattr and in .rescalefs/status, and is never sent again, across later uploads and
// an unmount's settle; renamed, it is a new version, published once under the new name.
func TestUploadRejectedFailsPermanently(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	env.Emulator.RejectUploadName("refused.txt")
	up := filepath.Join(env.Dir, "uploads")
	path := filepath.Join(up, "refused.txt")
	data := randBytes(60, 70_000)
	writeFile(t, path, data)

	fusetest.Eventually(t, publishDue, "refused.txt failed permanently", func() bool {
		return strings.HasPrefix(xattrOf(t, path), "failed permanently: ")
	})
	if s := xattrOf(t, path); !strings.HasSuffix(s, writeback.RejectedHint) || !strings.Contains(s, "400") {
		t.Errorf("xattr of the refused file: %q (want the write-back state's words, with the 400)", s)
	}
	// A later, independent upload goes through; the refused one was not sent again meanwhile (the
	// engine's retries are milliseconds apart in tests), nor by the settle of an unmount.
	writeFile(t, filepath.Join(up, "later.txt"), []byte("later"))
	env.WaitPublished(t, "later.txt", publishDue)
	env.Mount.SettleUploads()
	if n := env.Requests(emulator.EndpointUpload); n != 2 {
		t.Errorf("%d upload requests, want 2: refused.txt once, later.txt once", n)
	}
	st := readStatus(t, env)
	var seen bool
	for _, u := range st.Uploads {
		if u.Name == "refused.txt" {
			seen = true
			if u.State != upload.StateRejected || u.Attempts != 1 || !u.NextTry.IsZero() {
				t.Errorf("status of refused.txt: %+v", u)
			}
		}
	}
	if !seen || len(st.Settling) != 0 {
		t.Errorf("status: refused.txt listed %v, settling %q", seen, st.Settling)
	}

	// Renamed: a new version, sent once under the new name; the refused upload is withdrawn.
	if err := os.Rename(path, filepath.Join(up, "accepted.txt")); err != nil {
		t.Fatal(err)
	}
	checkPlatform(t, env, env.WaitPublished(t, "accepted.txt", publishDue), "accepted.txt", data)
	fusetest.Eventually(t, 10*time.Second, "accepted.txt gone from uploads/", gone(filepath.Join(up, "accepted.txt")))
	fusetest.Eventually(t, 10*time.Second, "nothing pending", func() bool { return env.Engine.Pending() == 0 })
	if n := env.Requests(emulator.EndpointUpload); n != 3 {
		t.Errorf("%d upload requests, want 3", n)
	}
	if n := published(env, "refused.txt"); n != 0 {
		t.Errorf("refused.txt published %d times", n)
	}
}
