package fs_test

import (
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestCorruptDiskBlockIsRefetched: a disk-cache file damaged behind the mount's back (a flipped byte, a
// truncation) is detected by its checksum and fetched again; the reader gets the right bytes.
func TestCorruptDiskBlockIsRefetched(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{NoMemory: true, Readahead: -1, Jobs: []emulator.JobSpec{
		{ID: "Cache", Name: "cache", Files: []emulator.FileSpec{{RelativePath: "data.bin", Size: 1<<20 + 100, Seed: 9}}},
	}})
	f := fileOf(t, env, "Cache", "data.bin")
	path := filepath.Join(env.Dir, "jobs", "Cache", "data.bin")
	if got := fusetest.ReadThroughMount(t, path); got != f.SHA512 {
		t.Fatal("first read differs from the stored plaintext")
	}
	// Re-read until the disk tier serves the whole file (no new requests): disk writes finish after
	// the read that fetched their blocks has returned.
	fetched := env.Requests(emulator.EndpointContents)
	fusetest.Eventually(t, 10*time.Second, "the file served from the disk tier", func() bool {
		if got := fusetest.ReadThroughMount(t, path); got != f.SHA512 {
			t.Fatal("disk-cached read differs from the stored plaintext")
		}
		n := env.Requests(emulator.EndpointContents)
		served := n == fetched
		fetched = n
		return served
	})

	// Damage every block file: flip a byte in half of them, truncate the others.
	var damaged int
	err := filepath.WalkDir(env.DiskDir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) < 2 {
			return err
		}
		if damaged%2 == 0 {
			b[len(b)/2] ^= 0x55
		} else {
			b = b[:len(b)/2]
		}
		damaged++
		return os.WriteFile(p, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if damaged < 2 {
		t.Fatalf("only %d cache files to damage in %s", damaged, env.DiskDir)
	}
	if got := fusetest.ReadThroughMount(t, path); got != f.SHA512 {
		t.Fatal("read after damaging the disk cache differs from the stored plaintext")
	}
	if n := env.Requests(emulator.EndpointContents); n <= fetched {
		t.Fatal("damaged blocks were not fetched again")
	}
	if st := env.Cache.Stats(); st.DiskCorrupt == 0 {
		t.Fatalf("no corrupt block counted: %+v", st)
	}
}

// TestFio runs fio's sequential and random read jobs on a mounted file: a real benchmark tool's access
// patterns (psync, several jobs in parallel) must complete without errors.
func TestFio(t *testing.T) {
	if _, err := exec.LookPath("fio"); err != nil {
		t.Fatal("fio is not installed (.ci/run installs it: apt-get install -y fio)")
	}
	env := fusetest.Mount(t, fusetest.Options{Jobs: []emulator.JobSpec{
		{ID: "Fio01", Name: "fio", Files: []emulator.FileSpec{{RelativePath: "big.bin", Size: 4 << 20, Seed: 3}}},
	}})
	path := filepath.Join(env.Dir, "jobs", "Fio01", "big.bin")
	for _, job := range [][]string{
		{"--name=seq", "--rw=read", "--bs=1M", "--numjobs=2"},
		{"--name=rand", "--rw=randread", "--bs=4k", "--io_size=1M", "--numjobs=4"},
	} {
		args := append([]string{"--filename=" + path, "--readonly", "--ioengine=psync", "--size=4M",
			"--group_reporting", "--output-format=terse"}, job...)
		out, err := exec.Command("fio", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("fio %s: %v\n%s", job[0], err, out)
		}
		// Terse format v3: field 5 is the error code of the group.
		fields := strings.Split(strings.TrimSpace(string(out)), ";")
		if len(fields) < 6 || fields[4] != "0" {
			t.Fatalf("fio %s reports an error: %s", job[0], out)
		}
	}
	if got := fusetest.ReadThroughMount(t, path); got != fileOf(t, env, "Fio01", "big.bin").SHA512 {
		t.Fatal("file differs from the plaintext after fio")
	}
}
