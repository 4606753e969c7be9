package fs_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
	"github.com/rescalefs/rescalefs/upload/writeback"

	"github.com/rescalefs/rescalefs/internal/testutil"
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
	data := testutil.RandomBytes(60, 70_000)
	writeFile(t, path, data)

	// Waited for in the write-back state's words: the engine's own status says "failed permanently"
	// too, from the moment it books the refusal until it has told the uploads layer (OnRejected), and
	// the xattr shows the engine's words while the file is still Queued there.
	fusetest.Eventually(t, publishDue, "refused.txt failed permanently in uploads/", func() bool {
		return strings.HasSuffix(xattrOf(t, path), writeback.RejectedHint)
	})
	if s := xattrOf(t, path); !strings.HasPrefix(s, "failed permanently: ") || !strings.Contains(s, "400") {
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

// TestUploadStoredNameNoLoop (issue 8, defect 2, the follow-up): a platform that stores a name
// differently from the name sent (here a knob of the emulator; the real one encodes a newline in a
// multipart form) does not make the file look renamed: it is published exactly once, and leaves
// uploads/. Only a user's rename sends a file again. Three later files, each published in turn, are
// three settle periods and more in which a second publication would have shown.
func TestUploadStoredNameNoLoop(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	env.Emulator.StoreUploadNameAs("norm name.txt", "norm_name.txt")
	up := filepath.Join(env.Dir, "uploads")
	writeFile(t, filepath.Join(up, "norm name.txt"), []byte("normalised"))
	id := env.WaitPublished(t, "norm name.txt", publishDue)
	if f := checkPlatform(t, env, id, "norm_name.txt", []byte("normalised")); f.ID != id {
		t.Fatalf("file %s, want %s", f.ID, id)
	}
	fusetest.Eventually(t, 10*time.Second, "norm name.txt gone from uploads/", gone(filepath.Join(up, "norm name.txt")))
	for i, name := range []string{"later1.txt", "later2.txt", "later3.txt"} {
		writeFile(t, filepath.Join(up, name), []byte(name))
		env.WaitPublished(t, name, publishDue)
		if n := env.Requests(emulator.EndpointUpload); n != int64(i+2) {
			t.Fatalf("after %s: %d upload requests, want %d (norm name.txt once)", name, n, i+2)
		}
	}
	if n := len(env.Published()); n != 4 {
		t.Errorf("%d publications, want 4: %+v", n, env.Published())
	}
}

// TestUploadRecoverReplacesDoesNotWait (issue 8, defect 4, at start): a file closed before a crash
// as a new version of a pending multipart upload replaces it when the next mount starts; the old
// upload's abort runs in the background, so the mount serves while the platform holds the abort.
func TestUploadRecoverReplacesDoesNotWait(t *testing.T) {
	dir := t.TempDir()
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{})
	emu := p.Emulator()
	// A multipart upload started by an earlier mount, its parts refused: it stays unfinished.
	emu.SetFaults(emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointS3UploadPart}})
	c, err := remote.New(remote.Options{BaseURL: p.URL(), APIKey: emu.APIKey(), MaxBackoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := upload.New(upload.Options{Client: c, Dir: dir, PartSize: upload.MinPartSize, SmallThreshold: -1,
		RetryMin: time.Hour, S3: remote.S3Options{MaxBackoff: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := eng.Enqueue(stagedFile(t, eng, testutil.RandomBytes(70, 2*testPart)), "doc.bin")
	if err != nil {
		t.Fatal(err)
	}
	eng.Start(fusetest.Context(t))
	fusetest.Eventually(t, 60*time.Second, "the first attempt failed", func() bool {
		st, ok := eng.Status(id)
		return ok && st.Attempts >= 1
	})
	eng.Close()
	// The new version, closed (sealed) before the crash, not queued yet.
	v2 := testutil.RandomBytes(71, 1000)
	eng = idleEngine(t, dir)
	if err := eng.RecordStaging(stagedFile(t, eng, v2), upload.StagingRecord{Path: "doc.bin", Closed: true, Size: int64(len(v2)), Replaces: id}); err != nil {
		t.Fatal(err)
	}
	eng.Close()

	emu.SetFaults(emulator.Faults{StallHeadersRate: 1, StallFor: 20 * time.Second, Endpoints: []string{emulator.EndpointS3Abort}})
	env := fusetest.MountOn(t, p, fusetest.Options{Uploads: fusetest.UploadOptions{Enabled: true, Dir: dir}}, fusetest.MountExtra{})
	fusetest.Eventually(t, 15*time.Second, "the mount serves while the abort is held", func() bool {
		return emu.Holding() >= 1
	})
	// The mount answers while the abort is held: uploads/ shows the new version, unless it was
	// published already (that does not wait for the abort either) and has left uploads/; the wait
	// below then finds its publication, with the new version's bytes.
	if _, err := os.Stat(filepath.Join(env.Dir, "uploads", "doc.bin")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("uploads/doc.bin while the abort is held: %v", err)
	}
	checkPlatform(t, env, env.WaitPublished(t, "doc.bin", publishDue), "doc.bin", v2)
}
