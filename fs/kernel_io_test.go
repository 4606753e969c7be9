package fs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs/fusetest"
)

// TestKernelIOSizes checks the I/O sizes the kernel and the programs copying out of a mount take from
// it (issue 11). Outputs say st_blksize 256 KiB, so cp writes its destination in 256 KiB writes (1 MiB
// ones cost cp about a CPU second per GiB more on a VM that returns free memory to its host), while the
// FUSE requests of a copy stay up to 1 MiB, sized by the kernel's read-ahead, not by cp's reads. Files
// each of whose reads or writes is one request (uploads/, live files) keep 1 MiB.
func TestKernelIOSizes(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs(), Uploads: fusetest.UploadOptions{Enabled: true}})
	blksize := func(p string) int64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return int64(st.Blksize)
	}
	out := filepath.Join(env.Dir, "jobs/Done1/airFoil2D/VTK/airFoil2D_100.vtk") // 3 MiB + 12345 bytes
	if got := blksize(out); got != 256<<10 {
		t.Errorf("an output's st_blksize %d, want %d", got, 256<<10)
	}
	up := filepath.Join(env.Dir, "uploads", "new.dat")
	if err := os.WriteFile(up, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := blksize(up); got != 1<<20 {
		t.Errorf("a file in uploads/: st_blksize %d, want %d", got, 1<<20)
	}

	// A real cp reads 256 KiB at a time; the mount sees requests of up to 1 MiB: 5 at most for the
	// file's 4 MiB-rounded size (the first is the kernel's initial 512 KiB window), not cp's 13.
	before := readStatus(t, env).Transfers.Reads
	dst := filepath.Join(t.TempDir(), "copy.vtk")
	if b, err := exec.Command("cp", out, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, b)
	}
	info, err := os.Stat(dst)
	if err != nil || info.Size() != 3<<20+12345 {
		t.Fatalf("the copy: %v, %v", info, err)
	}
	if n := readStatus(t, env).Transfers.Reads - before; n > 5 {
		t.Errorf("cp of a 3 MiB output made %d FUSE reads, want at most 5 (requests of up to 1 MiB)", n)
	}
}

// TestLiveFileIOSize: a running job's live file (DIRECT_IO: every read one request) says st_blksize
// 1 MiB, so cp copies it in few requests.
func TestLiveFileIOSize(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: liveJobs(), Lifecycle: liveLifecycle})
	p := filepath.Join(env.Dir, "jobs/Live1/process_output.log")
	var st unix.Stat_t
	fusetest.Eventually(t, 10*time.Second, "a live process_output.log", func() bool { return unix.Stat(p, &st) == nil })
	if st.Blksize != 1<<20 {
		t.Errorf("a live file's st_blksize %d, want %d", st.Blksize, 1<<20)
	}
}
