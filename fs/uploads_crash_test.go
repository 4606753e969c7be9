package fs_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/upload"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// stagingRecords reads the staging records of the engine folder dir, by their path in uploads/.
func stagingRecords(t *testing.T, dir string) map[string]upload.StagingRecord {
	t.Helper()
	out := map[string]upload.StagingRecord{}
	paths, _ := filepath.Glob(filepath.Join(dir, "staging", "*.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var r upload.StagingRecord
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[r.Path] = r
	}
	return out
}

// TestUploadStagingSealed: a file in uploads/ has a staging record from its creation; a close seals
// it (closed at its size) before the settle time is over, so a crash then loses nothing; a write
// after the close unseals it first; renames of the file and of a folder above it follow.
func TestUploadStagingSealed(t *testing.T) {
	dir := t.TempDir()
	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{Settle: time.Hour, Dir: dir}})
	up := filepath.Join(env.Dir, "uploads")
	if err := os.Mkdir(filepath.Join(up, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(up, "sub", "a.txt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := stagingRecords(t, dir)["sub/a.txt"]; !ok || r.Closed {
		t.Fatalf("record after create: %+v (found %v)", r, ok)
	}
	if _, err := f.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if r := stagingRecords(t, dir)["sub/a.txt"]; !r.Closed || r.Size != 5 {
		t.Fatalf("record after close: %+v", r)
	}
	// Written again: open in the record before the data changes, sealed again at the close.
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(", world")); err != nil {
		t.Fatal(err)
	}
	if r := stagingRecords(t, dir)["sub/a.txt"]; r.Closed {
		t.Fatalf("record while written again: %+v", r)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, filepath.Join(up, "sub", "b.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(up, "sub"), filepath.Join(up, "dir")); err != nil {
		t.Fatal(err)
	}
	recs := stagingRecords(t, dir)
	if r, ok := recs["dir/b.txt"]; !ok || !r.Closed || r.Size != 12 || len(recs) != 1 {
		t.Fatalf("records after the renames: %+v", recs)
	}
	if err := os.Remove(filepath.Join(up, "dir", "b.txt")); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(filepath.Join(dir, "staging")); len(left) != 0 {
		t.Fatalf("staging after unlink: %v", left)
	}
}

// TestUploadRecoverStaging: the staging files a crashed mount left are accounted for when the next
// mount starts: one closed by its writer is published under its recorded name; one cut off mid-write
// is shown back where it was, not uploaded, until opened and closed for writing; one closed under a
// temporary name is shown back and published once renamed.
func TestUploadRecoverStaging(t *testing.T) {
	dir := t.TempDir()
	eng := idleEngine(t, dir)
	stage := func(data []byte, r upload.StagingRecord) {
		t.Helper()
		if err := eng.RecordStaging(stagedFile(t, eng, data), r); err != nil {
			t.Fatal(err)
		}
	}
	closed := testutil.RandomBytes(21, 3*testPart/2)
	cut := testutil.RandomBytes(22, 1000)
	temp := testutil.RandomBytes(23, 777)
	stage(closed, upload.StagingRecord{Path: "runs/closed.bin", Closed: true, Size: int64(len(closed))})
	stage(cut, upload.StagingRecord{Path: "runs/cut.bin"})
	stage(temp, upload.StagingRecord{Path: ".final.dat.Qx81Zz", Closed: true, Size: int64(len(temp))})
	eng.Close()

	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{Dir: dir}})
	up := filepath.Join(env.Dir, "uploads")
	id := env.WaitPublished(t, "closed.bin", publishDue)
	checkPlatform(t, env, id, "closed.bin", closed)

	cutPath := filepath.Join(up, "runs", "cut.bin")
	if got, err := os.ReadFile(cutPath); err != nil || string(got) != string(cut) {
		t.Fatalf("cut.bin not shown back as it was: %v", err)
	}
	if s := xattrOf(t, cutPath); !strings.HasPrefix(s, "not uploaded: cut off") {
		t.Errorf("xattr of cut.bin: %q", s)
	}
	tempPath := filepath.Join(up, ".final.dat.Qx81Zz")
	if s := xattrOf(t, tempPath); !strings.Contains(s, "temporary name") {
		t.Errorf("xattr of the temporary file: %q", s)
	}
	// Neither is published, even when everything waiting is queued (as at unmount).
	env.Mount.SettleUploads()
	if n := published(env, "cut.bin") + published(env, ".final.dat.Qx81Zz"); n != 0 {
		t.Fatalf("%d half-written or temporary files published", n)
	}
	if p := env.Engine.Pending(); p != 0 {
		t.Fatalf("%d uploads pending, want none", p)
	}

	// Renamed, the temporary file is published; opened and closed for writing, the cut-off one too.
	if err := os.Rename(tempPath, filepath.Join(up, "final.dat")); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(cutPath, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	checkPlatform(t, env, env.WaitPublished(t, "final.dat", publishDue), "final.dat", temp)
	checkPlatform(t, env, env.WaitPublished(t, "cut.bin", publishDue), "cut.bin", cut)
	fusetest.Eventually(t, 10*time.Second, "cut.bin gone from uploads/", gone(cutPath))
}

// TestUploadRecoverCollision: a file shown back under a name a pending upload already has is shown
// beside it, and its record follows the new name.
func TestUploadRecoverCollision(t *testing.T) {
	dir := t.TempDir()
	eng := idleEngine(t, dir)
	v1 := func() string { return stagedFile(t, eng, []byte("v1")) }
	// A pending upload of same.txt, and a staging file cut off mid-write at the same path.
	if _, err := eng.Enqueue(v1(), "same.txt"); err != nil {
		t.Fatal(err)
	}
	if err := eng.RecordStaging(v1(), upload.StagingRecord{Path: "same.txt"}); err != nil {
		t.Fatal(err)
	}
	eng.Close()
	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{Dir: dir}})
	env.WaitPublished(t, "same.txt", publishDue)
	// The published one leaves uploads/ once the mount has been told (on its own goroutine, after the
	// platform confirmed it); the cut-off one stays, under its new name.
	var ents []os.DirEntry
	var err error
	fusetest.Eventually(t, publishDue, "uploads/ holds only the renamed cut-off file", func() bool {
		ents, err = os.ReadDir(filepath.Join(env.Dir, "uploads"))
		return err == nil && len(ents) == 1
	})
	if !strings.HasPrefix(ents[0].Name(), "same~") {
		t.Fatalf("uploads/: %v %v", ents, err)
	}
	if _, ok := stagingRecords(t, dir)[ents[0].Name()]; !ok {
		t.Errorf("record not renamed: %v", stagingRecords(t, dir))
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(env.Dir, "uploads", ents[0].Name()), &st); err != nil || st.Size != 2 {
		t.Errorf("stat: %v %d", err, st.Size)
	}
}
