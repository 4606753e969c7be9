package fs_test

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// sampleJobs: a completed job with folders and a few MiB, a second completed one, and a running one.
func sampleJobs() []emulator.JobSpec {
	return []emulator.JobSpec{
		{ID: "Done1", Name: "airfoil study", Files: []emulator.FileSpec{
			{RelativePath: "airFoil2D/system/fvSchemes", Size: 1680},
			{RelativePath: "airFoil2D/0/U", Size: 200 << 10},
			{RelativePath: "airFoil2D/VTK/airFoil2D_100.vtk", Size: 3<<20 + 12345},
			{RelativePath: "airFoil2D/VTK/airFoil2D_200.vtk", Size: 1 << 20},
			{RelativePath: "results/forces.dat", Size: 77777},
			{RelativePath: "empty.txt", Size: 0},
		}},
		{ID: "Done2", Name: "second", Created: time.Now().Add(-48 * time.Hour), Files: []emulator.FileSpec{
			{RelativePath: "out/a.vtk", Size: 1000},
			{RelativePath: "out/b.dat", Size: 2000},
		}},
		{ID: "Run01", Name: "still running", RunFor: time.Hour, Files: []emulator.FileSpec{
			{RelativePath: "final/result.vtk", Size: 4096},
		}},
	}
}

func fileOf(t *testing.T, env *fusetest.Env, jobID, rel string) emulator.FileInfo {
	t.Helper()
	for _, j := range env.Jobs {
		if j.ID != jobID {
			continue
		}
		for _, f := range j.Files {
			if f.RelativePath == rel {
				return f
			}
		}
	}
	t.Fatalf("no file %s in job %s", rel, jobID)
	return emulator.FileInfo{}
}

func TestListingAndAttributes(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs()})
	root := env.Dir

	top, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range top {
		names = append(names, e.Name())
	}
	if want := []string{".rescalefs", "by-name", "completed", "failed", "files", "jobs", "uploads"}; !slices.Equal(names, want) {
		t.Errorf("root: %v, want %v", names, want)
	}

	jobs := readNames(t, filepath.Join(root, "jobs"))
	if !slices.Equal(jobs, []string{"Done1", "Done2", "Run01"}) {
		t.Errorf("jobs/: %v", jobs)
	}
	got := readNames(t, filepath.Join(root, "jobs/Done1"))
	if want := []string{"airFoil2D", "empty.txt", "process_output.log", "results"}; !slices.Equal(got, want) {
		t.Errorf("jobs/Done1: %v, want %v", got, want)
	}

	// Sizes, modes, mtimes, blocks of every file against the emulator's records.
	for _, f := range env.Jobs[0].Files {
		p := filepath.Join(root, "jobs/Done1", f.RelativePath)
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatalf("stat %s: %v", p, err)
		}
		if st.Size != f.Size || st.Mode != syscall.S_IFREG|0o444 || st.Blocks != (f.Size+511)/512 {
			t.Errorf("%s: size %d mode %o blocks %d; want size %d", f.RelativePath, st.Size, st.Mode, st.Blocks, f.Size)
		}
		if st.Mtim.Sec == 0 {
			t.Errorf("%s: no mtime", f.RelativePath)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "jobs/Done1/airFoil2D"))
	if err != nil || fi.Mode() != os.ModeDir|0o555 {
		t.Errorf("dir mode: %v %v", fi.Mode(), err)
	}
	// The job folder's mtime is its latest status date: Done2 was created two days ago.
	d1, _ := os.Stat(filepath.Join(root, "jobs/Done1"))
	d2, _ := os.Stat(filepath.Join(root, "jobs/Done2"))
	if !d2.ModTime().Before(d1.ModTime()) {
		t.Errorf("job mtimes: Done1 %v Done2 %v", d1.ModTime(), d2.ModTime())
	}

	// Stable inode numbers: the same file has the same number through jobs/ and completed/.
	a, _ := os.Stat(filepath.Join(root, "jobs/Done1/results/forces.dat"))
	b, _ := os.Stat(filepath.Join(root, "completed/Done1/results/forces.dat"))
	if a.Sys().(*syscall.Stat_t).Ino != b.Sys().(*syscall.Stat_t).Ino {
		t.Error("inode numbers differ between paths")
	}

	// completed/: links, newest first; the running job is not there.
	comp := readDirOrder(t, filepath.Join(root, "completed"))
	if !slices.Equal(comp, []string{"Done1", "Done2"}) {
		t.Errorf("completed/: %v", comp)
	}
	if l, err := os.Readlink(filepath.Join(root, "completed/Done1")); err != nil || l != "../jobs/Done1" {
		t.Errorf("completed link: %q %v", l, err)
	}
	byName := readNames(t, filepath.Join(root, "by-name"))
	if !slices.Equal(byName, []string{"airfoil study (Done1)", "second (Done2)", "still running (Run01)"}) {
		t.Errorf("by-name/: %v", byName)
	}
	if _, err := os.Stat(filepath.Join(root, "by-name/second (Done2)/out/a.vtk")); err != nil {
		t.Errorf("through by-name: %v", err)
	}

	// Missing job: ENOENT, also for ids the platform could never have.
	for _, name := range []string{"Nope1", "..x", "@vtk", strings.Repeat("z", 200)} {
		if _, err := os.Stat(filepath.Join(root, "jobs", name)); !errors.Is(err, iofs.ErrNotExist) {
			t.Errorf("jobs/%s: %v, want ENOENT", name, err)
		}
	}

	// du -sb of a job is the sum of decryptedSize (folders count 0).
	var sum int64
	for _, f := range env.Jobs[0].Files {
		sum += f.Size
	}
	out := run(t, "du", "-sb", filepath.Join(root, "jobs/Done1"))
	if n, _ := strconv.ParseInt(strings.Fields(out)[0], 10, 64); n != sum {
		t.Errorf("du -sb = %d, want %d", n, sum)
	}
	// du (blocks) is not zero: st_blocks is set.
	out = run(t, "du", "-sk", filepath.Join(root, "jobs/Done1"))
	if n, _ := strconv.ParseInt(strings.Fields(out)[0], 10, 64); n < sum/1024 {
		t.Errorf("du -sk = %d, want >= %d", n, sum/1024)
	}

	// statfs: sane numbers.
	var sfs unix.Statfs_t
	if err := unix.Statfs(root, &sfs); err != nil || sfs.Blocks == 0 || sfs.Bsize == 0 || sfs.Namelen != 255 {
		t.Errorf("statfs: %+v %v", sfs, err)
	}

	// /proc/mounts names us.
	mounts, _ := os.ReadFile("/proc/mounts")
	if !strings.Contains(string(mounts), " "+root+" fuse.rescalefs ") {
		t.Errorf("/proc/mounts has no fuse.rescalefs at %s", root)
	}

	// .rescalefs/status is JSON.
	st, err := os.ReadFile(filepath.Join(root, ".rescalefs/status"))
	if err != nil || !bytes.Contains(st, []byte(`"transfers"`)) || !bytes.Contains(st, []byte(`"cache"`)) {
		t.Errorf("status: %s %v", st, err)
	}
}

func TestReads(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs()})
	for _, f := range env.Jobs[0].Files {
		p := filepath.Join(env.Dir, "jobs/Done1", f.RelativePath)
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		sum := sha512.Sum512(got)
		if hex.EncodeToString(sum[:]) != f.SHA512 || int64(len(got)) != f.Size {
			t.Errorf("%s: sha512 or size differ (%d bytes)", f.RelativePath, len(got))
		}
	}
	// Random-offset reads, fresh handle, against the plaintext.
	big := fileOf(t, env, "Done1", "airFoil2D/VTK/airFoil2D_100.vtk")
	want := env.Plaintext(t, big.ID)
	fh, err := os.Open(filepath.Join(env.Dir, "jobs/Done2/out/a.vtk")) // another file: cold cache
	if err != nil {
		t.Fatal(err)
	}
	fh.Close()
	r := rand.New(rand.NewPCG(1, 2))
	f, err := os.Open(filepath.Join(env.Dir, "completed/Done1", big.RelativePath))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := 0; i < 200; i++ {
		off := r.Int64N(big.Size)
		n := r.IntN(300000) + 1
		buf := make([]byte, n)
		k, err := f.ReadAt(buf, off)
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
		}
		if !bytes.Equal(buf[:k], want[off:min(off+int64(n), big.Size)]) {
			t.Fatalf("ReadAt(%d, %d): wrong bytes", off, n)
		}
	}
	// Xattrs.
	sha := make([]byte, 200)
	n, err := unix.Getxattr(filepath.Join(env.Dir, "jobs/Done1", big.RelativePath), "user.rescale.sha512", sha)
	if err != nil || string(sha[:n]) != big.SHA512 {
		t.Errorf("sha512 xattr %q %v", sha[:max(n, 0)], err)
	}
	n, err = unix.Getxattr(filepath.Join(env.Dir, "jobs/Done1"), "user.rescale.status", sha)
	if err != nil || string(sha[:n]) != "Completed" {
		t.Errorf("status xattr %q %v", sha[:max(n, 0)], err)
	}
	out := run(t, "getfattr", "-d", filepath.Join(env.Dir, "jobs/Done1"))
	for _, w := range []string{"user.rescale.name=\"airfoil study\"", "user.rescale.owner=", "user.rescale.date_completed="} {
		if !strings.Contains(out, w) {
			t.Errorf("getfattr -d lacks %s:\n%s", w, out)
		}
	}
}

// TestConcurrentReadersShareOneRequest: 16 readers of one block, each through its own open, cost one
// ranged request. The platform is frozen until all 16 reads have reached the cache and wait there (one
// on the fetch it started, 15 joined to it), so the overlap is certain, not left to latency. Each
// reads its own page, 64 KiB apart inside one 1 MiB block: readers of the same page would be merged by
// the kernel's page lock before the mount ever saw them, and would prove nothing of the cache.
func TestConcurrentReadersShareOneRequest(t *testing.T) {
	const readers = 16
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs(), Readahead: -1, NoDisk: true, BlockSize: 1 << 20})
	big := fileOf(t, env, "Done1", "airFoil2D/VTK/airFoil2D_100.vtk")
	p := filepath.Join(env.Dir, "jobs/Done1", big.RelativePath)
	if _, err := os.Stat(p); err != nil { // listing requests out of the way
		t.Fatal(err)
	}
	plain := env.Plaintext(t, big.ID)
	env.Emulator.ResetCounters()
	env.Emulator.SetFrozen(true)
	defer env.Emulator.SetFrozen(false)
	before := env.Cache.Stats()
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for i := range readers {
		wg.Go(func() {
			off := int64(i)*(64<<10) + 1000
			f, err := os.Open(p)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			buf := make([]byte, 4096)
			if _, err := f.ReadAt(buf, off); err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(buf, plain[off:off+4096]) {
				errs <- fmt.Errorf("reader %d: wrong bytes", i)
			}
		})
	}
	fusetest.Eventually(t, 30*time.Second, "every read waiting in the cache", func() bool {
		return env.Cache.Stats().ReadsWaiting >= readers
	})
	env.Emulator.SetFrozen(false)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := env.Requests(emulator.EndpointContents); n != 1 {
		t.Errorf("%d readers of one block made %d content requests, want 1", readers, n)
	}
	if s := env.Cache.Stats(); s.WaitHits-before.WaitHits != readers-1 {
		t.Errorf("%d reads joined the fetch in flight, want %d", s.WaitHits-before.WaitHits, readers-1)
	}
}

func TestSequentialReadFetchesEachBlockOnce(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs(), NoDisk: true})
	big := fileOf(t, env, "Done1", "airFoil2D/VTK/airFoil2D_100.vtk")
	p := filepath.Join(env.Dir, "jobs/Done1", big.RelativePath)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	env.Emulator.ResetCounters()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha512.Sum512(got); hex.EncodeToString(sum[:]) != big.SHA512 {
		t.Fatal("wrong content")
	}
	c := env.Emulator.Counters()
	// Every plaintext byte fetched exactly once, whatever the request sizes.
	if out := c.BytesOut[emulator.EndpointContents]; out != big.Size {
		t.Errorf("fetched %d bytes for a %d-byte file", out, big.Size)
	}
	blocks := (big.Size + 64<<10 - 1) / (64 << 10)
	if n := c.Requests[emulator.EndpointContents]; n > blocks || n == 0 {
		t.Errorf("%d requests for %d blocks", n, blocks)
	}
}

func TestFilterFolders(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs(), Library: []fusetest.LibraryFile{
		{Name: "mesh.vtk", Content: []byte("old")},
		{Name: "notes.txt", Content: []byte("n")},
	}})
	root := env.Dir
	if got := walk(t, filepath.Join(root, "jobs/Done1/@.vtk")); !slices.Equal(got, []string{
		"airFoil2D/", "airFoil2D/VTK/", "airFoil2D/VTK/airFoil2D_100.vtk", "airFoil2D/VTK/airFoil2D_200.vtk"}) {
		t.Errorf("jobs/Done1/@.vtk: %v", got)
	}
	if got := walk(t, filepath.Join(root, "jobs/Done1/airFoil2D/@U")); !slices.Equal(got, []string{"0/", "0/U"}) {
		t.Errorf("sub-folder filter: %v", got)
	}
	if got := walk(t, filepath.Join(root, "jobs/Done1/@nomatch")); len(got) != 0 {
		t.Errorf("no match: %v", got)
	}
	if got := walk(t, filepath.Join(root, "jobs/Done1/@.VTK")); len(got) != 0 {
		t.Errorf("case-insensitive match: %v", got)
	}
	if got := walk(t, filepath.Join(root, "completed/@.vtk")); !slices.Equal(got, []string{
		"Done1/", "Done1/airFoil2D/", "Done1/airFoil2D/VTK/", "Done1/airFoil2D/VTK/airFoil2D_100.vtk",
		"Done1/airFoil2D/VTK/airFoil2D_200.vtk", "Done2/", "Done2/out/", "Done2/out/a.vtk"}) {
		t.Errorf("completed/@.vtk: %v", got)
	}
	if got := walk(t, filepath.Join(root, "completed/@forces")); !slices.Equal(got, []string{
		"Done1/", "Done1/results/", "Done1/results/forces.dat"}) {
		t.Errorf("completed/@forces: %v", got)
	}
	if got := walk(t, filepath.Join(root, "files/@.vtk")); !slices.Equal(got, []string{"mesh.vtk"}) {
		t.Errorf("files/@.vtk: %v", got)
	}
	// Never in readdir: find does not see them.
	out := run(t, "find", root)
	if strings.Contains(out, "@") {
		t.Errorf("find sees a filter folder:\n%s", out)
	}
	// Filtered files read the same bytes.
	f := fileOf(t, env, "Done1", "airFoil2D/VTK/airFoil2D_200.vtk")
	got, err := os.ReadFile(filepath.Join(root, "jobs/Done1/@200/airFoil2D/VTK/airFoil2D_200.vtk"))
	if err != nil || !bytes.Equal(got, env.Plaintext(t, f.ID)) {
		t.Errorf("read through a filter: %v", err)
	}
}

func TestCompletedAppearsWithinPoll(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs()})
	comp := filepath.Join(env.Dir, "completed")
	if slices.Contains(readNames(t, comp), "Run01") {
		t.Fatal("running job in completed/")
	}
	// Cache negative and positive entries first, then complete the job on the platform.
	os.Lstat(filepath.Join(comp, "Run01"))
	os.Stat(filepath.Join(env.Dir, "jobs/Run01/final/result.vtk"))
	if err := env.Emulator.CompleteJob("Run01"); err != nil {
		t.Fatal(err)
	}
	fusetest.Eventually(t, 10*time.Second, "Run01 in completed/", func() bool {
		_, err := os.Lstat(filepath.Join(comp, "Run01"))
		return err == nil && slices.Contains(readNames(t, comp), "Run01")
	})
	fusetest.Eventually(t, 10*time.Second, "Run01 outputs", func() bool {
		_, err := os.Stat(filepath.Join(env.Dir, "jobs/Run01/final/result.vtk"))
		return err == nil
	})
	// A job added on the platform shows up in jobs/ too.
	if _, err := env.Emulator.AddJob(emulator.JobSpec{ID: "New01", Name: "late"}); err != nil {
		t.Fatal(err)
	}
	fusetest.Eventually(t, 10*time.Second, "New01 in jobs/", func() bool {
		return slices.Contains(readNames(t, filepath.Join(env.Dir, "jobs")), "New01")
	})
}

func TestReadOnly(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs()})
	root := env.Dir
	file := filepath.Join(root, "jobs/Done1/results/forces.dat")
	dir := filepath.Join(root, "jobs/Done1/results")
	for name, op := range map[string]func() error{
		"open for write": func() error { f, err := os.OpenFile(file, os.O_WRONLY, 0); f.Close(); return err },
		"open rdwr":      func() error { f, err := os.OpenFile(file, os.O_RDWR, 0); f.Close(); return err },
		"truncate":       func() error { return os.Truncate(file, 0) },
		"create":         func() error { f, err := os.Create(filepath.Join(dir, "new")); f.Close(); return err },
		"create in root": func() error { f, err := os.Create(filepath.Join(root, "new")); f.Close(); return err },
		"create upload":  func() error { f, err := os.Create(filepath.Join(root, "uploads/x")); f.Close(); return err },
		"mkdir":          func() error { return os.Mkdir(filepath.Join(dir, "d"), 0o755) },
		"mkdir in jobs":  func() error { return os.Mkdir(filepath.Join(root, "jobs/X"), 0o755) },
		"remove":         func() error { return os.Remove(file) },
		"rmdir":          func() error { return syscall.Rmdir(dir) },
		"rename":         func() error { return os.Rename(file, file+".x") },
		"chmod":          func() error { return os.Chmod(file, 0o644) },
		"chtimes":        func() error { return os.Chtimes(file, time.Now(), time.Now()) },
		"symlink":        func() error { return os.Symlink("x", filepath.Join(dir, "l")) },
		"link":           func() error { return os.Link(file, filepath.Join(dir, "l")) },
		"setxattr":       func() error { return unix.Setxattr(file, "user.x", []byte("1"), 0) },
		"remove link":    func() error { return os.Remove(filepath.Join(root, "completed/Done1")) },
		"access W_OK":    func() error { return unix.Access(file, unix.W_OK) },
	} {
		if err := op(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
	// Shell tools report it too.
	for _, args := range [][]string{{"touch", file}, {"touch", filepath.Join(dir, "n")}, {"rm", "-f", file},
		{"mv", file, file + "2"}, {"mkdir", filepath.Join(dir, "m")}, {"chmod", "600", file}} {
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Read-only file system") {
			t.Errorf("%v: %v %s", args, err, out)
		}
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("file gone: %v", err)
	}
}

func TestFaults(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs(), Faults: emulator.Faults{
		ErrorRate: 0.2, CutRate: 0.2, ShortRate: 0.1, Seed: 7,
	}})
	for _, f := range env.Jobs[0].Files {
		got, err := os.ReadFile(filepath.Join(env.Dir, "jobs/Done1", f.RelativePath))
		if err != nil {
			t.Fatalf("read %s: %v", f.RelativePath, err)
		}
		if sum := sha512.Sum512(got); hex.EncodeToString(sum[:]) != f.SHA512 {
			t.Errorf("%s: wrong bytes under faults", f.RelativePath)
		}
	}
	if c := env.Emulator.Counters(); len(c.Faults) == 0 {
		t.Error("no fault was injected")
	}
}

func TestHostileNames(t *testing.T) {
	long := strings.Repeat("n", 300) + ".dat"
	env := fusetest.Mount(t, fusetest.Options{Jobs: []emulator.JobSpec{{ID: "Evil1", Name: "evil/name\x00", Files: []emulator.FileSpec{
		{RelativePath: "../../escape.txt", Size: 10},
		{RelativePath: "a/../../../b.txt", Size: 11},
		{RelativePath: "x/./y//z.txt", Size: 12},
		{RelativePath: long, Size: 13},
		{RelativePath: "dup.txt", Size: 14},
		{RelativePath: "dup.txt", Size: 15},
		{RelativePath: "weird name \t with tab", Size: 16},
		{RelativePath: "..hidden..", Size: 17},
	}}}})
	got := walk(t, filepath.Join(env.Dir, "jobs/Evil1"))
	var files int
	for _, p := range got {
		for _, c := range strings.Split(strings.TrimSuffix(p, "/"), "/") {
			if c == ".." || c == "." || c == "" || len(c) > 255 {
				t.Errorf("bad component %q in %q", c, p)
			}
		}
		if !strings.HasSuffix(p, "/") {
			files++
		}
	}
	if files != 9 { // 8 + process_output.log
		t.Errorf("files: %d in %q", files, got)
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "escape.txt")); err == nil {
		t.Error("escaped the job folder")
	}
	for _, want := range []string{"escape.txt", "b.txt", "x/y/z.txt", "dup.txt", "weird name \t with tab", "..hidden.."} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %q in %q", want, got)
		}
	}
	if names := readNames(t, filepath.Join(env.Dir, "by-name")); len(names) != 1 || strings.ContainsAny(names[0], "/\x00") {
		t.Errorf("by-name: %q", names)
	}
	// Everything reads.
	run(t, "tar", "cf", "/dev/null", "-C", filepath.Join(env.Dir, "jobs"), "Evil1")
}

func TestRealPrograms(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs()})
	src := filepath.Join(env.Dir, "jobs/Done1")
	dst := t.TempDir()

	run(t, "cp", "-r", src, filepath.Join(dst, "cp"))
	compareTrees(t, src, filepath.Join(dst, "cp"))

	run(t, "rsync", "-a", src+"/", filepath.Join(dst, "rsync")+"/")
	compareTrees(t, src, filepath.Join(dst, "rsync"))
	if out := run(t, "rsync", "-a", "-c", "-n", "-i", src+"/", filepath.Join(dst, "rsync")+"/"); strings.TrimSpace(out) != "" {
		t.Errorf("rsync -c -n -i after rsync -a:\n%s", out)
	}

	run(t, "tar", "cf", filepath.Join(dst, "a.tar"), "-C", filepath.Join(env.Dir, "jobs"), "Done1")
	if err := os.MkdirAll(filepath.Join(dst, "untar"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "tar", "xf", filepath.Join(dst, "a.tar"), "-C", filepath.Join(dst, "untar"))
	compareTrees(t, src, filepath.Join(dst, "untar/Done1"))

	out := run(t, "find", src, "-type", "f")
	if n := len(strings.Fields(out)); n != len(env.Jobs[0].Files) {
		t.Errorf("find -type f: %d files, want %d", n, len(env.Jobs[0].Files))
	}
	// find through the completed/ link (-L) sees the same files.
	out = run(t, "find", "-L", filepath.Join(env.Dir, "completed/Done1"), "-type", "f")
	if n := len(strings.Fields(out)); n != len(env.Jobs[0].Files) {
		t.Errorf("find -L completed/Done1: %d files", n)
	}
}

// helpers

func readNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("readdir %s: %v", dir, err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

// readDirOrder lists names in the order readdir returns them.
func readDirOrder(t *testing.T, dir string) []string {
	t.Helper()
	f, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// walk lists a tree below dir: "path/" for folders, "path" for files, sorted.
func walk(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			rel += "/"
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	sort.Strings(out)
	return out
}

func compareTrees(t *testing.T, a, b string) {
	t.Helper()
	wa, wb := walk(t, a), walk(t, b)
	if !slices.Equal(wa, wb) {
		t.Errorf("trees differ:\n%v\n%v", wa, wb)
		return
	}
	for _, p := range wa {
		if strings.HasSuffix(p, "/") {
			continue
		}
		x, err1 := os.ReadFile(filepath.Join(a, p))
		y, err2 := os.ReadFile(filepath.Join(b, p))
		if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs (%v, %v)", p, err1, err2)
		}
		sa, _ := os.Stat(filepath.Join(a, p))
		sb, _ := os.Stat(filepath.Join(b, p))
		if sa.Size() != sb.Size() {
			t.Errorf("%s: sizes %d %d", p, sa.Size(), sb.Size())
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}
