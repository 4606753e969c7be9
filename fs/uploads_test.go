package fs_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/remote/remotetest"
	"github.com/rescalefs/rescalefs/upload"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

const (
	testPart   = upload.MinPartSize
	publishDue = 90 * time.Second // a deadline, not a timing: uploads of a few MiB end in well under a second
)

func uploadEnv(t *testing.T, o fusetest.Options) *fusetest.Env {
	t.Helper()
	o.Uploads.Enabled = true
	return fusetest.Mount(t, o)
}

// checkPlatform checks that file id holds plain, and that a Rescale-style client reading the object
// straight from storage and decrypting it with the registered key and the iv metadata gets plain.
func checkPlatform(t *testing.T, env *fusetest.Env, id, name string, plain []byte) remote.File {
	t.Helper()
	if got := env.Plaintext(t, id); !bytes.Equal(got, plain) {
		t.Fatalf("%s: platform plaintext differs (%d bytes, want %d)", name, len(got), len(plain))
	}
	ctx := fusetest.Context(t)
	f, err := env.Client.GetFile(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha512.Sum512(plain)
	if want := hex.EncodeToString(sum[:]); f.Name != name || f.DecryptedSize != int64(len(plain)) || f.SHA512() != want {
		t.Fatalf("registered %q size %d sha %.16s, want %q %d %.16s", f.Name, f.DecryptedSize, f.SHA512(), name, len(plain), want)
	}
	got, err := remotetest.StoredPlaintext(ctx, env.Client, f)
	if err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("%s: the object decrypted with the registered key differs (%v)", name, err)
	}
	return f
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("write %s: %v", path, err)
	}
}

func gone(path string) func() bool {
	return func() bool { _, err := os.Lstat(path); return errors.Is(err, os.ErrNotExist) }
}

func xattrOf(t *testing.T, path string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := unix.Getxattr(path, "user.rescale.upload", buf)
	if err != nil {
		return "error: " + err.Error()
	}
	return string(buf[:n])
}

// published counts confirmed uploads named name.
func published(env *fusetest.Env, name string) int {
	n := 0
	for _, s := range env.Published() {
		if s.Name == name {
			n++
		}
	}
	return n
}

// TestUploadSizes: files of several sizes written into uploads/ end on the platform byte-identical and
// decryptable the way Rescale's clients decrypt; each then leaves uploads/ and shows in files/.
func TestUploadSizes(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	cases := []struct {
		name string
		size int
	}{
		{"empty.dat", 0},
		{"one.dat", 1},
		{"odd.dat", 1000 + 7}, // not a multiple of 16
		{"small.bin", 3<<20 + 1},
		{"parts.bin", 3*testPart + 12345}, // multipart: four 5 MiB parts, the last short
	}
	up := filepath.Join(env.Dir, "uploads")
	data := map[string][]byte{}
	for i, c := range cases {
		data[c.name] = testutil.RandomBytes(uint64(i), c.size)
		writeFile(t, filepath.Join(up, c.name), data[c.name])
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := env.WaitPublished(t, c.name, publishDue)
			checkPlatform(t, env, id, c.name, data[c.name])
			fusetest.Eventually(t, 10*time.Second, c.name+" gone from uploads/", gone(filepath.Join(up, c.name)))
			var got []byte
			fusetest.Eventually(t, 10*time.Second, c.name+" in files/", func() bool {
				b, err := os.ReadFile(filepath.Join(env.Dir, "files", c.name))
				got = b
				return err == nil
			})
			if !bytes.Equal(got, data[c.name]) {
				t.Errorf("files/%s differs from what was written", c.name)
			}
		})
	}
	if n := env.Requests(emulator.EndpointS3CreateMultipart); n != 1 {
		t.Errorf("%d multipart uploads, want 1 (only parts.bin is above the threshold)", n)
	}
	if n := env.Requests(emulator.EndpointS3UploadPart); n != 4 {
		t.Errorf("%d parts sent, want 4", n)
	}
}

// TestUploadPendingVisible: while not yet published, a file shows in uploads/ with its real size, reads
// back, and says where it stands in user.rescale.upload and .rescalefs/status; then it is published.
func TestUploadPendingVisible(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{Settle: time.Hour}})
	up := filepath.Join(env.Dir, "uploads")
	if err := os.MkdirAll(filepath.Join(up, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	data := testutil.RandomBytes(7, 2*testPart+100)
	path := filepath.Join(up, "a", "b", "deep.bin")
	writeFile(t, path, data)

	check := func(stage string) {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil || fi.Size() != int64(len(data)) {
			t.Fatalf("%s: stat: %v, size %v", stage, err, fi)
		}
		ents, err := os.ReadDir(filepath.Join(up, "a", "b"))
		if err != nil || len(ents) != 1 || ents[0].Name() != "deep.bin" {
			t.Fatalf("%s: readdir: %v %v", stage, err, ents)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("%s: read back: %v", stage, err)
		}
	}
	check("settling")
	if s := xattrOf(t, path); !strings.HasPrefix(s, "settling") {
		t.Errorf("xattr while settling: %q", s)
	}

	// The platform refuses every multipart start: the upload retries and says why.
	env.Emulator.SetFaults(emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointS3CreateMultipart}})
	env.Mount.SettleUploads()
	fusetest.Eventually(t, 30*time.Second, "a failed attempt", func() bool {
		s := xattrOf(t, path)
		return strings.HasPrefix(s, "retrying: ") || strings.HasPrefix(s, "failed: ")
	})
	check("pending")
	st := readStatus(t, env)
	if len(st.Uploads) != 1 || st.Uploads[0].Name != "deep.bin" || st.Uploads[0].Size != int64(len(data)) {
		t.Fatalf("status uploads: %+v", st.Uploads)
	}

	env.Emulator.SetFaults(emulator.Faults{})
	id := env.WaitPublished(t, "deep.bin", publishDue)
	checkPlatform(t, env, id, "deep.bin", data)
	fusetest.Eventually(t, 10*time.Second, "deep.bin gone from uploads/", gone(path))
	if err := os.Remove(filepath.Join(up, "a", "b")); err != nil {
		t.Errorf("rmdir of the emptied folder: %v", err)
	}
	if err := os.Remove(filepath.Join(up, "a")); err != nil {
		t.Errorf("rmdir: %v", err)
	}
}

func readStatus(t *testing.T, env *fusetest.Env) fs.Status {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.Dir, ".rescalefs", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var st fs.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("status JSON: %v", err)
	}
	return st
}

// TestUploadUnlinkCancels: rm of a file whose multipart upload is under way aborts it and publishes
// nothing.
func TestUploadUnlinkCancels(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{Faults: emulator.Faults{Bandwidth: 2 << 20}})
	path := filepath.Join(env.Dir, "uploads", "big.bin")
	writeFile(t, path, testutil.RandomBytes(3, 6*testPart))
	fusetest.Eventually(t, 30*time.Second, "the multipart upload started", func() bool {
		return env.Requests(emulator.EndpointS3CreateMultipart) >= 1
	})
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	fusetest.Eventually(t, 30*time.Second, "an abort", func() bool { return env.Requests(emulator.EndpointS3Abort) >= 1 })
	if n := env.Engine.Pending(); n != 0 {
		t.Errorf("%d uploads still pending", n)
	}
	if n := env.Requests(emulator.EndpointS3Complete) + env.Requests(emulator.EndpointRegister); n != 0 {
		t.Errorf("%d complete/register requests after the unlink", n)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat after rm: %v", err)
	}
}

// TestUploadRewrite: a file written again while its upload is pending is a new version: the old upload
// is cancelled and the new content published, once, whatever the number of closes (dup'ed descriptors).
// Covers a rewrite in place (no O_TRUNC: a copy of the pending content is changed) and `cp` over it.
func TestUploadRewrite(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	up := filepath.Join(env.Dir, "uploads")
	block := emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointUpload, emulator.EndpointS3CreateMultipart}}
	env.Emulator.SetFaults(block)

	v1 := testutil.RandomBytes(1, 100_000)
	path := filepath.Join(up, "doc.txt")
	writeFile(t, path, v1)
	fusetest.Eventually(t, 30*time.Second, "v1 queued", func() bool { return env.Engine.Pending() == 1 })

	// In place, through two descriptors of one open (two flushes).
	v2 := bytes.Clone(v1)
	copy(v2[5000:], "new version in place")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd2, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("new version in place"), 5000); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd2)
	f.Close()
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, v2) {
		t.Fatalf("read after in-place rewrite: %v", err)
	}
	fusetest.Eventually(t, 30*time.Second, "v2 queued, v1 cancelled", func() bool {
		s := env.Engine.Snapshot()
		return len(s) == 1 && s[0].Size == int64(len(v2)) && env.Engine.Pending() == 1
	})

	// cp over the pending file (open with O_TRUNC, write, close).
	v3 := testutil.RandomBytes(3, 70_000)
	src := filepath.Join(t.TempDir(), "doc.txt")
	writeFile(t, src, v3)
	if out, err := exec.Command("cp", src, path).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	fusetest.Eventually(t, 30*time.Second, "v3 queued alone", func() bool {
		s := env.Engine.Snapshot()
		return len(s) == 1 && s[0].Size == int64(len(v3))
	})
	env.Emulator.SetFaults(emulator.Faults{})
	id := env.WaitPublished(t, "doc.txt", publishDue)
	checkPlatform(t, env, id, "doc.txt", v3)
	fusetest.Eventually(t, 10*time.Second, "doc.txt gone from uploads/", gone(path))

	// Written again after it was published: a new file, published once more.
	v4 := testutil.RandomBytes(4, 5000)
	writeFile(t, path, v4)
	fusetest.Eventually(t, publishDue, "v4 published", func() bool { return published(env, "doc.txt") == 2 })
	checkPlatform(t, env, env.Published()[len(env.Published())-1].FileID, "doc.txt", v4)
	// Let any stray timer fire: still two publications, and two successful single-request uploads.
	fusetest.Eventually(t, 10*time.Second, "nothing pending", func() bool { return env.Engine.Pending() == 0 })
	if n := published(env, "doc.txt"); n != 2 {
		t.Errorf("doc.txt published %d times, want 2 (v3 and v4)", n)
	}
	if n := env.Emulator.Counters().Statuses[emulator.EndpointUpload][200] + env.Emulator.Counters().Statuses[emulator.EndpointUpload][201]; n != 2 {
		t.Errorf("%d successful uploads, want 2", n)
	}
}

// TestUploadRename: a pending file renamed is published under its new name; a rename over an existing
// pending file cancels that file's upload.
func TestUploadRename(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	up := filepath.Join(env.Dir, "uploads")
	env.Emulator.SetFaults(emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointUpload}})
	a, b := testutil.RandomBytes(1, 4000), testutil.RandomBytes(2, 5000)
	writeFile(t, filepath.Join(up, "draft.txt"), a)
	writeFile(t, filepath.Join(up, "other.txt"), b)
	fusetest.Eventually(t, 30*time.Second, "both queued", func() bool { return env.Engine.Pending() == 2 })
	if err := os.Rename(filepath.Join(up, "draft.txt"), filepath.Join(up, "final.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(up, "final.txt"), filepath.Join(up, "other.txt")); err != nil { // over a pending file
		t.Fatal(err)
	}
	if n := env.Engine.Pending(); n != 1 {
		t.Errorf("%d pending after a rename over a pending file, want 1", n)
	}
	if err := os.Rename(filepath.Join(up, "other.txt"), filepath.Join(env.Dir, "files", "x")); !errors.Is(err, syscall.EXDEV) {
		t.Errorf("rename out of uploads/: %v, want EXDEV", err)
	}
	env.Emulator.SetFaults(emulator.Faults{})
	id := env.WaitPublished(t, "other.txt", publishDue)
	checkPlatform(t, env, id, "other.txt", a)
	// Two kinds of request on their way as the faults cleared may still publish (the platform has no
	// rename, and a request sent cannot be called back): a retry under draft.txt or final.txt, and
	// one of other.txt's first version, which the rename replaced. Each is deleted (the first once
	// other.txt is published, the second as soon as it is answered), so the library ends with
	// other.txt only. TestUploadRenameWhilePublishing and upload's TestCancelWhilePublishing make
	// those cases certain.
	fusetest.Eventually(t, 10*time.Second, "nothing pending", func() bool { return env.Engine.Pending() == 0 })
	fusetest.Eventually(t, 60*time.Second, "other.txt's first version withdrawn", func() bool {
		select {
		case <-env.Engine.CancelsDone():
			return true
		default:
			return false
		}
	})
	pubs := env.Published()
	if last := pubs[len(pubs)-1]; last.Name != "other.txt" || len(pubs) > 2 || len(pubs) == 2 && pubs[0].Name != "draft.txt" && pubs[0].Name != "final.txt" {
		t.Errorf("publications %+v, want other.txt last, after at most one under a name it left", pubs)
	}
	lib, err := env.Client.LibraryFiles(fusetest.Context(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(lib) != 1 || lib[0].ID != id {
		t.Errorf("library %+v, want other.txt (%s) only", lib, id)
	}
	stored := env.Emulator.Counters().Statuses[emulator.EndpointUpload][201]
	if n := env.Requests(emulator.EndpointFileDelete); n != stored-1 {
		t.Errorf("%d files stored, %d deleted: want all but other.txt deleted", stored, n)
	}
}

// TestUploadPrograms: what real programs do ends as one correctly named upload each: rsync (a hidden
// temporary renamed at the end), an editor's save (swap file, backup, rename), files in sub-folders
// (published under their base names).
func TestUploadPrograms(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{Settle: 300 * time.Millisecond}})
	up := filepath.Join(env.Dir, "uploads")
	src := t.TempDir()
	rs := testutil.RandomBytes(10, 2*testPart+3)
	writeFile(t, filepath.Join(src, "synced.bin"), rs)
	if _, err := exec.LookPath("rsync"); err != nil {
		t.Fatal("rsync is not installed (.ci/run installs it: apt-get install -y rsync)")
	}
	if out, err := exec.Command("rsync", "-a", filepath.Join(src, "synced.bin"), up+"/").CombinedOutput(); err != nil {
		t.Fatalf("rsync: %v: %s", err, out)
	}
	id := env.WaitPublished(t, "synced.bin", publishDue)
	checkPlatform(t, env, id, "synced.bin", rs)

	// An editor's save: the swap file comes and goes, the new content is written to a temporary and
	// renamed over the name, a backup name~ is left.
	ed := []byte("edited text\n")
	swp := filepath.Join(up, ".notes.txt.swp")
	writeFile(t, swp, []byte("swap"))
	writeFile(t, filepath.Join(up, "notes.txt~"), []byte("backup"))
	writeFile(t, filepath.Join(up, "4913"), nil)
	if err := os.Remove(filepath.Join(up, "4913")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(up, ".notes.txt.XyZ123"), ed)
	if err := os.Rename(filepath.Join(up, ".notes.txt.XyZ123"), filepath.Join(up, "notes.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(swp); err != nil {
		t.Fatal(err)
	}
	id = env.WaitPublished(t, "notes.txt", publishDue)
	checkPlatform(t, env, id, "notes.txt", ed)
	if s := xattrOf(t, filepath.Join(up, "notes.txt~")); !strings.Contains(s, "temporary") {
		t.Errorf("backup file state %q", s)
	}

	// Sub-folders: published under the base name.
	if err := os.MkdirAll(filepath.Join(up, "case1", "inputs"), 0o755); err != nil {
		t.Fatal(err)
	}
	sub := testutil.RandomBytes(12, 777)
	writeFile(t, filepath.Join(up, "case1", "inputs", "mesh.inp"), sub)
	id = env.WaitPublished(t, "mesh.inp", publishDue)
	checkPlatform(t, env, id, "mesh.inp", sub)

	fusetest.Eventually(t, 10*time.Second, "nothing pending", func() bool { return env.Engine.Pending() == 0 })
	for _, s := range env.Published() {
		switch s.Name {
		case "synced.bin", "notes.txt", "mesh.inp":
		default:
			t.Errorf("unexpected upload %q", s.Name)
		}
	}
	const want = 3 // synced.bin, notes.txt, mesh.inp: each once
	if n := len(env.Published()); n != want {
		t.Errorf("%d publications, want %d: %+v", n, want, env.Published())
	}
}

// TestUploadFaults: 429s, 5xx and cut connections during a multipart upload still end byte-identical.
func TestUploadFaults(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	env.Emulator.SetFaults(emulator.Faults{ErrorRate: 0.15, ThrottleRate: 0.1, CutRate: 0.1, RetryAfter: 10 * time.Millisecond, Seed: 42,
		Endpoints: []string{emulator.EndpointS3CreateMultipart, emulator.EndpointS3UploadPart, emulator.EndpointS3Complete,
			emulator.EndpointS3ListParts, emulator.EndpointRegister, emulator.EndpointCredentials, emulator.EndpointUpload}})
	big, small := testutil.RandomBytes(21, 5*testPart+999), testutil.RandomBytes(22, 30_000)
	writeFile(t, filepath.Join(env.Dir, "uploads", "big.bin"), big)
	writeFile(t, filepath.Join(env.Dir, "uploads", "small.bin"), small)
	checkPlatform(t, env, env.WaitPublished(t, "big.bin", 3*publishDue), "big.bin", big)
	checkPlatform(t, env, env.WaitPublished(t, "small.bin", 3*publishDue), "small.bin", small)
	if f := env.Emulator.Counters().Faults; len(f) == 0 {
		t.Error("no fault was injected")
	} else {
		t.Logf("faults injected: %v", f)
	}
}

// TestUploadENOSPC: a full staging disk gives ENOSPC to the writer (a 2 MiB tmpfs holds the engine's
// folder).
func TestUploadENOSPC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Skipf("tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount tmpfs: %v; files of it still open: %q", err, openUnder(dir))
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
	env := uploadEnv(t, fusetest.Options{Uploads: fusetest.UploadOptions{Dir: dir, Settle: time.Hour}})
	free := func() int64 {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatalf("statfs %s: %v", dir, err)
		}
		return int64(st.Bavail) * st.Bsize
	}
	empty := free() // the engine's folders made, no staging file yet
	f, err := os.Create(filepath.Join(env.Dir, "uploads", "huge.bin"))
	if err != nil {
		t.Fatal(err)
	}
	buf := testutil.RandomBytes(5, 256<<10)
	var werr error
	for i := 0; i < 16 && werr == nil; i++ {
		_, werr = f.Write(buf)
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing 4 MiB into a 2 MiB staging disk: %v, want ENOSPC", werr)
	}
	// Removing the file frees the space: its staging file is removed at once, and its data closed once
	// the kernel has released the writer's handle. The kernel sends that RELEASE on its own time after
	// close(2) has returned, so the unlink may come first; until the release, the handle could still
	// read and write the removed file (as on any filesystem), and its blocks stay in use.
	if err := os.Remove(filepath.Join(env.Dir, "uploads", "huge.bin")); err != nil {
		t.Fatal(err)
	}
	fusetest.Eventually(t, 10*time.Second, "huge.bin's staging space freed", func() bool { return free() >= empty })
	writeFile(t, filepath.Join(env.Dir, "uploads", "fits.bin"), buf)
}

// openUnder lists the files under dir this process has open (what keeps a filesystem busy).
func openUnder(dir string) []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var open []string
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.HasPrefix(p, dir+"/") {
			open = append(open, p)
		}
	}
	return open
}

// TestUploadsOnlyWritablePlace: outside uploads/ everything stays EROFS, inside the usual errors.
func TestUploadsOnlyWritablePlace(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{Library: []fusetest.LibraryFile{{Name: "lib.txt", Content: []byte("x")}}})
	for _, p := range []string{"files/new.txt", "jobs/new", "new.txt", ".rescalefs/x"} {
		if err := os.WriteFile(filepath.Join(env.Dir, p), nil, 0o644); !errors.Is(err, syscall.EROFS) {
			t.Errorf("create %s: %v, want EROFS", p, err)
		}
	}
	if err := os.Mkdir(filepath.Join(env.Dir, "files", "d"), 0o755); !errors.Is(err, syscall.EROFS) {
		t.Errorf("mkdir in files/: %v, want EROFS", err)
	}
	up := filepath.Join(env.Dir, "uploads")
	if err := unix.Access(up, unix.W_OK); err != nil {
		t.Errorf("access(uploads/, W_OK): %v", err)
	}
	if err := os.Mkdir(filepath.Join(up, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(up, "d", ".keep.swp"), []byte("x"))
	if err := os.Remove(filepath.Join(up, "d")); !errors.Is(err, syscall.ENOTEMPTY) {
		t.Errorf("rmdir of a non-empty folder: %v, want ENOTEMPTY", err)
	}
	// Truncate, chmod and times on a file being written.
	p := filepath.Join(up, "d", ".keep.swp")
	if err := os.Truncate(p, 10); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := os.Chtimes(p, mt, mt); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != 10 || fi.Mode().Perm() != 0o600 || !fi.ModTime().Equal(mt) {
		t.Errorf("after truncate/chmod/chtimes: %v %v", fi, err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, append([]byte("x"), make([]byte, 9)...)) {
		t.Errorf("content after truncate: %q", got)
	}
	// Random writes.
	rf, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rf.WriteAt([]byte("END"), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := rf.WriteAt([]byte("MID"), 50); err != nil {
		t.Fatal(err)
	}
	rf.Close()
	got, _ = os.ReadFile(p)
	if len(got) != 103 || string(got[50:53]) != "MID" || string(got[100:]) != "END" {
		t.Errorf("after random writes: %d bytes", len(got))
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(up, "d")); err != nil {
		t.Errorf("rmdir: %v", err)
	}
	if len(env.Published()) != 0 || env.Engine.Pending() != 0 {
		t.Errorf("a temporary name was uploaded: %+v", env.Engine.Snapshot())
	}
}
