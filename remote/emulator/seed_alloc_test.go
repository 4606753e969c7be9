package emulator

import (
	"runtime"
	"testing"
	"time"
)

// TestSeedAllocatesBySize: seeding small generated files allocates about their size, not a full-size
// copy buffer and decryption buffer each (1.25 MiB per file made the demo's 10,000-file job most of
// its start-up time). Bytes allocated, not time: deterministic on a shared machine.
func TestSeedAllocatesBySize(t *testing.T) {
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	const files = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if err := e.Seed(SampleOptions{LargeFileSize: 1 << 20, ManyFiles: files, Running: []time.Duration{}}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	perFile := (after.TotalAlloc - before.TotalAlloc) / files
	if perFile > 64<<10 {
		t.Fatalf("seeding allocated %d KiB per file; want well under a copy buffer (1 MiB)", perFile>>10)
	}
}
