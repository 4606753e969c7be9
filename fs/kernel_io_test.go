package fs_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs/fusetest"
)

// TestKernelIOSizes checks the two sizes the kernel and the programs copying out of a mount take from
// it (issue 11): files say st_blksize 128 KiB, so cp writes its destination in 128 KiB writes (1 MiB
// writes cost a cold cp 1.2-1.6 CPU seconds per GiB more on a VM that returns free memory to its
// host), and the mount's kernel read-ahead is 8 MiB, so a sequential reader has eight 1 MiB requests
// out at once. The read-ahead is raised through the mount's bdi, which needs root, as these tests run.
func TestKernelIOSizes(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs()})
	var st unix.Stat_t
	p := filepath.Join(env.Dir, "jobs/Done1/results/forces.dat")
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Blksize != 128<<10 {
		t.Errorf("st_blksize %d, want %d", st.Blksize, 128<<10)
	}
	if err := unix.Stat(env.Dir, &st); err != nil {
		t.Fatal(err)
	}
	bdi := "/sys/class/bdi/" + strconv.Itoa(int(unix.Major(st.Dev))) + ":" + strconv.Itoa(int(unix.Minor(st.Dev))) + "/read_ahead_kb"
	b, err := os.ReadFile(bdi)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "8192" {
		t.Errorf("%s: %s KiB, want 8192", bdi, got)
	}
}
