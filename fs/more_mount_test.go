package fs_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// ls -R of a 10,000-file job costs one paged listing (page_size 1000), not a request per folder or file.
func TestLargeJobListingIsPaged(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 files")
	}
	var files []emulator.FileSpec
	for i := 0; i < 10000; i++ {
		files = append(files, emulator.FileSpec{RelativePath: fmt.Sprintf("d%02d/sub%d/f%05d.dat", i%50, i%3, i), Size: 1})
	}
	t0 := time.Now()
	env := fusetest.Mount(t, fusetest.Options{Jobs: []emulator.JobSpec{{ID: "Big01", Files: files}}})
	t.Logf("seeded and mounted in %v", time.Since(t0))
	defer func(t0 time.Time) { t.Logf("listed in %v", time.Since(t0)) }(time.Now())
	if _, err := os.Stat(filepath.Join(env.Dir, "jobs/Big01")); err != nil {
		t.Fatal(err)
	}
	env.Emulator.ResetCounters()
	out := run(t, "ls", "-lR", filepath.Join(env.Dir, "jobs/Big01"))
	if n := strings.Count(out, ".dat\n"); n != 10000 {
		t.Errorf("ls -lR shows %d files", n)
	}
	c := env.Emulator.Counters()
	pages := c.Requests[emulator.EndpointJobFiles]
	if pages == 0 || pages > 11 { // 10,001 files (with process_output.log) in pages of 1000
		t.Errorf("%d listing requests", pages)
	}
	if n := c.Requests[emulator.EndpointContents] + c.Requests[emulator.EndpointFile]; n != 0 {
		t.Errorf("%d per-file requests for a listing", n)
	}
	// Listed once per mount: again, nothing goes out.
	env.Emulator.ResetCounters()
	run(t, "find", filepath.Join(env.Dir, "jobs/Big01"), "-name", "f09999.dat")
	if n := env.Requests(emulator.EndpointJobFiles); n != 0 {
		t.Errorf("relisting a completed job: %d requests", n)
	}
}

// A platform that keeps failing gives EIO, never wrong bytes and never a hang.
func TestPersistentErrorsAreEIO(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs()})
	p := filepath.Join(env.Dir, "jobs/Done1/results/forces.dat")
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	env.Emulator.SetFaults(emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointContents}})
	if _, err := os.ReadFile(p); !errors.Is(err, syscall.EIO) {
		t.Errorf("read under permanent 5xx: %v, want EIO", err)
	}
	env.Emulator.SetFaults(emulator.Faults{})
	if _, err := os.ReadFile(p); err != nil {
		t.Errorf("read after recovery: %v", err)
	}
}

// Missing jobs are ENOENT and cached: asking again does not go to the platform every time.
func TestMissingJob(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs(), Poll: 60e9})
	p := filepath.Join(env.Dir, "jobs/Nope1")
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stat: %v", err)
	}
	before := env.Requests(emulator.EndpointJob)
	for i := 0; i < 20; i++ {
		os.Stat(p)
	}
	if n := env.Requests(emulator.EndpointJob) - before; n != 0 {
		t.Errorf("%d more GetJob requests for a known-missing job", n)
	}
	// A job not in the list but on the platform is found by id.
	if _, err := env.Emulator.AddJob(emulator.JobSpec{ID: "Late1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(env.Dir, "jobs/Late1/process_output.log")); err != nil {
		t.Errorf("job found by id: %v", err)
	}
}

// Raw -o options pass through: ro shows in /proc/mounts and the kernel refuses writes itself.
func TestMountOptions(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: sampleJobs(), MountOptions: []string{"ro,allow_other"}})
	mounts, _ := os.ReadFile("/proc/mounts")
	var line string
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, " "+env.Dir+" ") {
			line = l
		}
	}
	if !strings.Contains(line, "fuse.rescalefs ro,") || !strings.Contains(line, "allow_other") {
		t.Errorf("mount line: %q", line)
	}
	if err := unix.Access(filepath.Join(env.Dir, "jobs/Done1/empty.txt"), unix.W_OK); !errors.Is(err, syscall.EROFS) {
		t.Errorf("access W_OK: %v", err)
	}
}
