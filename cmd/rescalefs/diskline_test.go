package main

import (
	"bytes"
	"encoding/json"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

func TestDiskLine(t *testing.T) {
	for _, c := range []struct {
		st   *cache.Stats
		want string
	}{
		{nil, ""},
		{&cache.Stats{DiskBytes: 1 << 30, DiskCorrupt: 2}, ""},
		{&cache.Stats{DiskErrors: 3}, "disk cache: 3 blocks not stored on disk (served uncached)"},
		{&cache.Stats{DiskStuckFiles: 2, DiskStuckBytes: 16 << 20, DiskErrors: 5},
			"disk cache: 2 files (16MiB) it cannot delete keep their room used (a read-only or immutable folder? see the log); 5 blocks not stored on disk (served uncached)"},
	} {
		if got := diskLine(c.st); got != c.want {
			t.Errorf("got %q, want %q", got, c.want)
		}
	}
}

// diskCacheEnv mounts one 1 MiB+100 file with no memory tier and no read-ahead, so that every read of
// it after the first is served by the disk tier; read reads it whole through the mount (the kernel's
// pages dropped first) and fails the test if the bytes differ from the stored plaintext.
func diskCacheEnv(t *testing.T) (env *fusetest.Env, read func()) {
	t.Helper()
	env = fusetest.Mount(t, fusetest.Options{NoMemory: true, Readahead: -1, Jobs: []emulator.JobSpec{
		{ID: "Stuck01", Files: []emulator.FileSpec{{RelativePath: "data.bin", Size: 1<<20 + 100, Seed: 9}}},
	}})
	want := env.Jobs[0].Files[0].SHA512
	path := filepath.Join(env.Dir, "jobs/Stuck01/data.bin")
	read = func() {
		t.Helper()
		if fusetest.ReadThroughMount(t, path) != want {
			t.Fatal("a read differs from the stored plaintext")
		}
	}
	// Read until the disk tier serves the whole file (its writes end after the read that fetched).
	fetched := env.Requests(emulator.EndpointContents)
	fusetest.Eventually(t, 10*time.Second, "the file served from the disk tier", func() bool {
		read()
		n := env.Requests(emulator.EndpointContents)
		served := n == fetched
		fetched = n
		return served
	})
	return env, read
}

// damageDiskCache flips a byte in every block file of env's disk tier (the mount deletes a corrupt
// one) and makes their folders immutable, so that the mount can neither delete them nor store the
// blocks again there; then it reads the file again with read and waits until the disk tier has tried
// to store every block fetched again (it does so after the read that fetched). It returns how many
// files it damaged and their bytes.
func damageDiskCache(t *testing.T, env *fusetest.Env, read func()) (damaged, damagedBytes int64) {
	t.Helper()
	folders := map[string]bool{}
	err := filepath.WalkDir(env.DiskDir, func(p string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") || strings.HasSuffix(d.Name(), "-verified") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b[len(b)/2] ^= 0x55
		damaged++
		damagedBytes += int64(len(b))
		folders[filepath.Dir(p)] = true
		return os.WriteFile(p, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	if damaged < 2 {
		t.Fatalf("only %d cache files in %s", damaged, env.DiskDir)
	}
	for dir := range folders {
		testutil.Undeletable(t, dir)
	}
	read()
	fusetest.Eventually(t, 10*time.Second, "every block fetched again failed to be stored", func() bool {
		return env.Cache.Stats().DiskErrors >= damaged
	})
	return damaged, damagedBytes
}

// TestStatusSaysDiskFilesStuck: disk-cache files the mount cannot delete (damaged, so the mount deletes
// them, in folders made immutable) show in .rescalefs/status (DiskStuckFiles, DiskStuckBytes) and in
// `rescalefs status`, with the blocks the disk tier could not store; before that, no such line.
func TestStatusSaysDiskFilesStuck(t *testing.T) {
	env, read := diskCacheEnv(t)
	status := func() string {
		t.Helper()
		var out, errb bytes.Buffer
		if code := runStatus([]string{env.Dir}, &out, &errb); code != exitOK {
			t.Fatalf("status: %d %s", code, errb.String())
		}
		return out.String()
	}
	if out := status(); strings.Contains(out, "disk cache:") {
		t.Fatalf("a healthy disk cache has a disk cache line:\n%s", out)
	}

	damaged, damagedBytes := damageDiskCache(t, env, read)

	raw, err := os.ReadFile(filepath.Join(env.Dir, ".rescalefs", "status"))
	if err != nil {
		t.Fatal(err)
	}
	var st struct{ Cache *cache.Stats }
	if err := json.Unmarshal(raw, &st); err != nil || st.Cache == nil {
		t.Fatalf("status: %v\n%s", err, raw)
	}
	// Every damaged file is stuck; every block fetched again could not be written into its folder.
	if c := st.Cache; c.DiskStuckFiles != damaged || c.DiskStuckBytes != damagedBytes || c.DiskCorrupt != damaged || c.DiskErrors != damaged {
		t.Errorf(".rescalefs/status: %d stuck files of %d bytes, %d corrupt, %d disk errors; want %d stuck of %d bytes, %[5]d corrupt, %[5]d errors",
			c.DiskStuckFiles, c.DiskStuckBytes, c.DiskCorrupt, c.DiskErrors, damaged, damagedBytes)
	}
	out := status()
	t.Logf("rescalefs status:\n%s", out)
	if line := diskLine(st.Cache); !strings.HasPrefix(line, "disk cache: ") || !strings.Contains(out, "\n"+line+"\n") {
		t.Errorf("rescalefs status says:\n%s\nwant the line %q", out, line)
	}
}
