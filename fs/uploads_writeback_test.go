package fs_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// tmpfs mounts a tmpfs of size bytes on a new temporary folder, unmounted in cleanup (registered
// first, so it runs after the mount's and the engine's cleanups).
func tmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("tmpfs (the test needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs: %v", err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	return dir
}

// openT opens path; the file is closed in cleanup too, before the mount is unmounted, so a failing
// test does not leave a file open on its own mount (its exit would wait on the mount forever).
func openT(t *testing.T, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}

// TestUploadDiskFullNeverPublishesHalf (defect 1): the block cache and staging share a 20 MiB disk.
// With the disk filled by cached blocks, a file that fits once they are evicted is written and
// published whole (staging wins over the cache); a file too large for the disk fails with ENOSPC and
// is never published, even once everything waiting is queued: it stays in uploads/ saying why, until
// rewritten (then published) or removed.
func TestUploadDiskFullNeverPublishesHalf(t *testing.T) {
	disk := tmpfs(t, "20m")
	for _, d := range []string{"cache", "uploads"} {
		if err := os.Mkdir(filepath.Join(disk, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	lib := testutil.RandomBytes(40, 24<<20)
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{})
	env := fusetest.MountOn(t, p, fusetest.Options{
		NoMemory: true, Library: []fusetest.LibraryFile{{Name: "big.lib", Content: lib}},
		Uploads: fusetest.UploadOptions{Enabled: true, Dir: filepath.Join(disk, "uploads")},
	}, fusetest.MountExtra{DiskDir: filepath.Join(disk, "cache"), CacheDir: disk})
	up := filepath.Join(env.Dir, "uploads")

	// Reading a library file larger than the disk fills it with cached blocks.
	fusetest.Eventually(t, 60*time.Second, "the block cache fills the disk", func() bool {
		got, err := os.ReadFile(filepath.Join(env.Dir, "files", "big.lib"))
		if err != nil || !bytes.Equal(got, lib) {
			t.Fatalf("read big.lib: %v", err)
		}
		return freeBytes(t, disk) < 2<<20
	})

	// 12 MiB fits once cached blocks make room.
	fits := testutil.RandomBytes(41, 12<<20)
	src := filepath.Join(t.TempDir(), "fits.bin")
	writeFile(t, src, fits)
	if out, err := exec.Command("cp", src, filepath.Join(up, "fits.bin")).CombinedOutput(); err != nil {
		t.Fatalf("cp of a file that fits once the cache makes room: %v: %s", err, out)
	}
	checkPlatform(t, env, env.WaitPublished(t, "fits.bin", publishDue), "fits.bin", fits)
	fusetest.Eventually(t, 10*time.Second, "fits.bin gone from uploads/", gone(filepath.Join(up, "fits.bin")))

	// 40 MiB does not fit: cp fails with ENOSPC, and the part written is never published.
	huge := testutil.RandomBytes(42, 40<<20)
	src = filepath.Join(t.TempDir(), "huge.bin")
	writeFile(t, src, huge)
	dst := filepath.Join(up, "huge.bin")
	out, err := exec.Command("cp", src, dst).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No space left") {
		t.Fatalf("cp of 40 MiB onto a 20 MiB disk: %v: %s; want ENOSPC", err, out)
	}
	env.Mount.SettleUploads() // what the settle time (or an unmount) would do
	if n, p := published(env, "huge.bin"), env.Engine.Pending(); n != 0 || p != 0 {
		t.Fatalf("a half-written file: %d published, %d pending", n, p)
	}
	if s := xattrOf(t, dst); !strings.HasPrefix(s, "not uploaded: a write failed") {
		t.Errorf("xattr of the half-written file: %q", s)
	}
	if fi, err := os.Stat(dst); err != nil || fi.Size() >= int64(len(huge)) {
		t.Errorf("the half-written file: %v %v", fi, err)
	}
	// Opened and closed again without a rewrite: still not published.
	f := openT(t, dst, os.O_WRONLY)
	if _, err := f.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	f.Close()
	env.Mount.SettleUploads()
	if n, p := published(env, "huge.bin"), env.Engine.Pending(); n != 0 || p != 0 {
		t.Fatalf("after another write and close: %d published, %d pending", n, p)
	}

	// cp over it with content that fits (O_TRUNC: a rewrite): published, that content.
	small := testutil.RandomBytes(43, 3<<20)
	src = filepath.Join(t.TempDir(), "huge.bin")
	writeFile(t, src, small)
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp over the failed file: %v: %s", err, out)
	}
	checkPlatform(t, env, env.WaitPublished(t, "huge.bin", publishDue), "huge.bin", small)
	if n := published(env, "huge.bin"); n != 1 {
		t.Errorf("huge.bin published %d times, want 1", n)
	}
}

// idleEngine is an upload engine on dir that is never started (no traffic), to prepare what a mount
// finds there; the caller closes it.
func idleEngine(t *testing.T, dir string) *upload.Engine {
	t.Helper()
	c, err := remote.New(remote.Options{BaseURL: "http://127.0.0.1:1", APIKey: "unused-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := upload.New(upload.Options{Client: c, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// pendingFromJournal leaves in dir an engine journal holding one pending upload of data named name,
// as a mount stopped before it was sent would.
func pendingFromJournal(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	eng := idleEngine(t, dir)
	if _, err := eng.Enqueue(stagedFile(t, eng, data), name); err != nil {
		t.Fatal(err)
	}
	eng.Close()
}

// stagedFile is a new staging file of eng holding data, synced and closed; it returns its path.
func stagedFile(t *testing.T, eng *upload.Engine, data []byte) string {
	t.Helper()
	f, err := eng.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// TestUploadResumedWritable (defect 3): an upload resumed from the journal is a file like the others:
// append, truncate, overwrite and rename work, and the last content is published once under the last
// name.
func TestUploadResumedWritable(t *testing.T) {
	dir := t.TempDir()
	v1 := testutil.RandomBytes(50, 70_000)
	pendingFromJournal(t, dir, "resumed.dat", v1)
	block := emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointUpload, emulator.EndpointS3CreateMultipart}}
	env := uploadEnv(t, fusetest.Options{Faults: block, Uploads: fusetest.UploadOptions{Dir: dir}})
	path := filepath.Join(env.Dir, "uploads", "resumed.dat")
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, v1) {
		t.Fatalf("the resumed upload reads back: %v", err)
	}
	// Append.
	f := openT(t, path, os.O_WRONLY|os.O_APPEND)
	if _, err := f.Write([]byte("appended")); err != nil {
		t.Fatalf("append to a resumed upload: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// Overwrite in place, then truncate.
	f = openT(t, path, os.O_WRONLY)
	if _, err := f.WriteAt([]byte("OVER"), 10); err != nil {
		t.Fatalf("overwrite: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := os.Truncate(path, 60_000); err != nil {
		t.Fatalf("truncate: %v", err)
	}
	want := bytes.Clone(v1[:60_000])
	copy(want[10:], "OVER")
	// Rename.
	final := filepath.Join(env.Dir, "uploads", "final.dat")
	if err := os.Rename(path, final); err != nil {
		t.Fatalf("rename: %v", err)
	}
	if got, err := os.ReadFile(final); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("content after the changes: %v", err)
	}
	fusetest.Eventually(t, 30*time.Second, "the last version queued alone", func() bool {
		s := env.Engine.Snapshot()
		return len(s) == 1 && s[0].Name == "final.dat" && s[0].Size == int64(len(want))
	})
	env.Emulator.SetFaults(emulator.Faults{})
	checkPlatform(t, env, env.WaitPublished(t, "final.dat", publishDue), "final.dat", want)
	fusetest.Eventually(t, 10*time.Second, "nothing pending", func() bool { return env.Engine.Pending() == 0 })
	if n := len(env.Published()); n != 1 {
		t.Errorf("%d publications, want 1 (final.dat): %+v", n, env.Published())
	}
}

// TestUploadRemoveDoesNotWait (defect 4): rm of a file whose multipart upload is under way, and mv of
// another file over one, return without waiting on the network (here the platform answers nothing
// until the test says so): the upload is withdrawn at once and its abort goes on in the background.
// It waits on the engine (CancelsDone), never on the clock: the aborts of both multipart uploads are
// over once the withdrawals are.
func TestUploadRemoveDoesNotWait(t *testing.T) {
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{})
	// Parts fail: both multipart uploads are started and stay unfinished.
	noParts := emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointS3UploadPart}}
	env := fusetest.MountOn(t, p, fusetest.Options{Uploads: fusetest.UploadOptions{Enabled: true}}, fusetest.MountExtra{})
	env.Emulator.SetFaults(noParts)
	up := filepath.Join(env.Dir, "uploads")
	writeFile(t, filepath.Join(up, "gone.bin"), testutil.RandomBytes(60, 6*testPart))
	writeFile(t, filepath.Join(up, "over.bin"), testutil.RandomBytes(61, 6*testPart))
	fusetest.Eventually(t, publishDue, "both multipart uploads started", func() bool { // 13 s seen at load 14
		return env.Requests(emulator.EndpointS3CreateMultipart) >= 2
	})
	// The platform answers nothing from now on; new.txt is queued, sent once it answers (frozen first, so
	// that new.txt cannot be published and gone from uploads/ before the mv, however slow the test).
	env.Emulator.SetFrozen(true)
	writeFile(t, filepath.Join(up, "new.txt"), []byte("replacement"))

	// An rm or mv that waited on the network would not return while the platform is frozen; the
	// deadline only turns that hang into a failure.
	done := make(chan error, 2)
	go func() { done <- syscall.Unlink(filepath.Join(up, "gone.bin")) }()
	go func() { done <- os.Rename(filepath.Join(up, "new.txt"), filepath.Join(up, "over.bin")) }()
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("rm or mv over a pending upload waits on the network")
		}
	}
	withdrawn := env.Engine.CancelsDone()
	select {
	case <-withdrawn:
		t.Fatal("the withdrawals were over before the platform answered: the aborts were not sent")
	default:
	}
	for _, s := range env.Engine.Snapshot() {
		if s.Name == "gone.bin" || (s.Name == "over.bin" && s.Size != int64(len("replacement"))) {
			t.Errorf("still pending after rm/mv: %+v", s)
		}
	}
	if _, err := os.Stat(filepath.Join(up, "gone.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after rm: %v", err)
	}
	// The platform answers again: both multipart uploads are aborted, once each, nothing of the
	// withdrawn uploads is published, the replacement is, and nothing stays pending.
	env.Emulator.SetFaults(emulator.Faults{})
	select {
	case <-withdrawn:
	case <-time.After(2 * time.Minute): // only a hang: each abort is bounded by the engine
		t.Fatal("the withdrawals never ended")
	}
	if n := env.Requests(emulator.EndpointS3Abort); n != 2 {
		t.Errorf("%d aborts, want 2 (gone.bin's and over.bin's multipart uploads)", n)
	}
	fusetest.Eventually(t, publishDue, "over.bin published", func() bool { return published(env, "over.bin") == 1 })
	fusetest.Eventually(t, 30*time.Second, "nothing pending", func() bool { return env.Engine.Pending() == 0 })
	if n := published(env, "gone.bin"); n != 0 {
		t.Errorf("gone.bin published %d times", n)
	}
	for _, s := range env.Published() {
		if s.Name == "over.bin" && s.Size != int64(len("replacement")) {
			t.Errorf("over.bin published with %d bytes, want the replacement", s.Size)
		}
	}
}

// TestUploadDotfiles (defect 6): ordinary dotfiles shaped like rsync's temporaries (.case.config,
// .env.backup) are published under their own names once no rename came for the hold time; rsync's
// own temporaries are still renamed first (one publication, the final name), and an editor's swap
// file is never published.
func TestUploadDotfiles(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{Hold: 500 * time.Millisecond}})
	up := filepath.Join(env.Dir, "uploads")
	cfg, bak := []byte("solver=implicit\n"), []byte("KEY=value\n")
	writeFile(t, filepath.Join(up, ".case.config"), cfg)
	writeFile(t, filepath.Join(up, ".env.backup"), bak)
	writeFile(t, filepath.Join(up, ".notes.txt.swp"), []byte("swap"))
	src := t.TempDir()
	rs := testutil.RandomBytes(70, 100_000)
	writeFile(t, filepath.Join(src, "synced.bin"), rs)
	if out, err := exec.Command("rsync", filepath.Join(src, "synced.bin"), up+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v: %s", err, out)
	}
	checkPlatform(t, env, env.WaitPublished(t, ".case.config", publishDue), ".case.config", cfg)
	checkPlatform(t, env, env.WaitPublished(t, ".env.backup", publishDue), ".env.backup", bak)
	checkPlatform(t, env, env.WaitPublished(t, "synced.bin", publishDue), "synced.bin", rs)
	env.Mount.SettleUploads()
	fusetest.Eventually(t, 10*time.Second, "nothing pending", func() bool { return env.Engine.Pending() == 0 })
	if n := len(env.Published()); n != 3 {
		t.Errorf("%d publications, want 3 (.case.config, .env.backup, synced.bin): %+v", n, env.Published())
	}
	if s := xattrOf(t, filepath.Join(up, ".notes.txt.swp")); !strings.Contains(s, "temporary name") {
		t.Errorf("xattr of the swap file: %q", s)
	}
}

// TestUploadMoveFromLibrary (defect 8): mv of a library file into uploads/ fails, and the failure has
// no effect: nothing is created in uploads/, nothing is published. The rename is refused with EROFS,
// not EXDEV: EXDEV would make mv copy the file into uploads/ before failing to remove it from files/.
func TestUploadMoveFromLibrary(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{Library: []fusetest.LibraryFile{{Name: "run.sh", Content: []byte("#!/bin/sh\n")}}})
	up := filepath.Join(env.Dir, "uploads")
	out, err := exec.Command("mv", filepath.Join(env.Dir, "files", "run.sh"), up+"/").CombinedOutput()
	if err == nil {
		t.Fatalf("mv out of files/ succeeded: %s", out)
	}
	t.Logf("mv: %s", out)
	env.Mount.SettleUploads()
	ents, err := os.ReadDir(up)
	if err != nil || len(ents) != 0 {
		t.Errorf("uploads/ after the failed mv: %v %v", ents, err)
	}
	if n, p := len(env.Published()), env.Engine.Pending(); n != 0 || p != 0 {
		t.Errorf("after the failed mv: %d published, %d pending", n, p)
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "files", "run.sh")); err != nil {
		t.Errorf("files/run.sh after the failed mv: %v", err)
	}
}

// TestUploadBadNames (defect 2): names the platform cannot store (a newline, a control character) are
// refused when the file is created or renamed, with EINVAL; nothing is sent.
func TestUploadBadNames(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	up := filepath.Join(env.Dir, "uploads")
	for _, name := range []string{"two\nlines.txt", "bell\x07.txt", "tab\tname.txt"} {
		if err := os.WriteFile(filepath.Join(up, name), []byte("x"), 0o644); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("create %q: %v, want EINVAL", name, err)
		}
	}
	writeFile(t, filepath.Join(up, "plain.txt"), []byte("plain"))
	if err := os.Rename(filepath.Join(up, "plain.txt"), filepath.Join(up, "new\nline.txt")); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("rename to a name with a newline: %v, want EINVAL", err)
	}
	checkPlatform(t, env, env.WaitPublished(t, "plain.txt", publishDue), "plain.txt", []byte("plain"))
	env.Mount.SettleUploads()
	if n := len(env.Published()); n != 1 {
		t.Errorf("%d publications, want 1: %+v", n, env.Published())
	}
	if n := env.Requests(emulator.EndpointUpload); n != 1 {
		t.Errorf("%d upload requests, want 1", n)
	}
}

// asNobody runs a shell command as the user nobody and returns its combined output and error.
func asNobody(t *testing.T, cmd string) (string, error) {
	t.Helper()
	out, err := exec.Command("su", "nobody", "-s", "/bin/sh", "-c", cmd).CombinedOutput()
	return string(out), err
}

// TestAllowOtherOwnerOnly (defect 5): with -o allow_other another local user can neither read the
// outputs and the library nor list them, publish into uploads/, nor remove a pending upload; the
// owner still can.
func TestAllowOtherOwnerOnly(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{MountOptions: []string{"allow_other"},
		Library: []fusetest.LibraryFile{{Name: "secret.txt", Content: []byte("secret\n")}},
		Uploads: fusetest.UploadOptions{Settle: time.Hour}})
	// The way to the mount point is open to everyone (the test's folders are 0700).
	if err := os.Chmod(filepath.Dir(env.Dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := asNobody(t, "stat "+env.Dir); err != nil {
		t.Fatalf("nobody cannot reach the mount point, so the test proves nothing: %v: %s", err, out)
	}
	up := filepath.Join(env.Dir, "uploads")
	writeFile(t, filepath.Join(up, "pending.txt"), []byte("mine"))
	if got, err := os.ReadFile(filepath.Join(env.Dir, "files", "secret.txt")); err != nil || string(got) != "secret\n" {
		t.Fatalf("the owner reads files/secret.txt: %q %v", got, err)
	}
	for _, cmd := range []string{
		"cat " + filepath.Join(env.Dir, "files", "secret.txt"),
		"ls " + filepath.Join(env.Dir, "files"),
		"echo x > " + filepath.Join(up, "intruder.txt"),
		"rm -f " + filepath.Join(up, "pending.txt"),
		"cat " + filepath.Join(up, "pending.txt"),
	} {
		if out, err := asNobody(t, cmd); err == nil {
			t.Errorf("as nobody, %q succeeded: %s", cmd, out)
		}
	}
	if _, err := os.Stat(filepath.Join(up, "pending.txt")); err != nil {
		t.Errorf("pending.txt after nobody's rm: %v", err)
	}
	if _, err := os.Stat(filepath.Join(up, "intruder.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("intruder.txt: %v", err)
	}
	env.Mount.SettleUploads()
	fusetest.Eventually(t, publishDue, "pending.txt published", func() bool { return published(env, "pending.txt") == 1 })
	if n := len(env.Published()); n != 1 {
		t.Errorf("%d publications, want 1: %+v", n, env.Published())
	}
}

// TestUploadSameNameTwoFolders (defect 7): uploads/a/same.txt and uploads/b/same.txt are both published
// as same.txt (the library is flat); files/ shows both: the newer as same.txt, the older beside it as
// same~<file id>.txt, so each published file can be read back.
func TestUploadSameNameTwoFolders(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	up := filepath.Join(env.Dir, "uploads")
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(up, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	first, second := []byte("from a\n"), []byte("from b, later\n")
	writeFile(t, filepath.Join(up, "a", "same.txt"), first)
	idA := env.WaitPublished(t, "same.txt", publishDue)
	writeFile(t, filepath.Join(up, "b", "same.txt"), second)
	fusetest.Eventually(t, publishDue, "both published", func() bool { return published(env, "same.txt") == 2 })
	var idB string
	for _, s := range env.Published() {
		if s.FileID != idA {
			idB = s.FileID
		}
	}
	checkPlatform(t, env, idA, "same.txt", first)
	checkPlatform(t, env, idB, "same.txt", second)
	files := filepath.Join(env.Dir, "files")
	older := "same~" + idA + ".txt"
	fusetest.Eventually(t, 10*time.Second, "files/ shows both", func() bool {
		ents, err := os.ReadDir(files)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		return slices.Equal(got, []string{"same.txt", older})
	})
	if got, err := os.ReadFile(filepath.Join(files, "same.txt")); err != nil || !bytes.Equal(got, second) {
		t.Errorf("files/same.txt: %q %v, want the newer", got, err)
	}
	if got, err := os.ReadFile(filepath.Join(files, older)); err != nil || !bytes.Equal(got, first) {
		t.Errorf("files/%s: %q %v, want the older", older, got, err)
	}
}
