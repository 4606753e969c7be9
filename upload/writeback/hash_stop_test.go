package writeback

import (
	"errors"
	"os"
	"testing"
)

// TestSettleAllFinalStopsHashers: the mount's end (SettleAll(true)) stops the hashers and waits for
// them before it closes the data files they read, so no hasher, and no descriptor of a staging file
// (nor the disk space it holds), outlives the mount. Before, a hasher could still be reading a chunk,
// or waiting for a buffer, after SettleAll returned (TestUploadENOSPC met it: its staging tmpfs was
// still busy when it was unmounted).
func TestSettleAllFinalStopsHashers(t *testing.T) {
	s, _ := newTestSet(t, t.TempDir())
	// Every hashing buffer taken: the file's hasher starts and waits for one.
	var held [][]byte
	for range hashers {
		held = append(held, <-s.hashBufs)
	}
	t.Cleanup(func() {
		for _, b := range held {
			s.hashBufs <- b
		}
	})
	f, err := s.NewFile(Spec{Name: "a.bin", Rel: "a.bin", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 3*hashChunk), 0); err != nil {
		t.Fatal(err)
	}
	f.mu.RLock()
	running := f.ph.running
	f.mu.RUnlock()
	if !running {
		t.Fatal("the hasher did not start")
	}

	s.SettleAll(true)
	f.mu.RLock()
	running, data := f.ph.running, f.data
	f.mu.RUnlock()
	if running {
		t.Error("a hasher still runs once the mount's end has settled the files")
	}
	if _, err := data.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the staging file after the mount's end: %v, want it closed", err)
	}
	f.Release(true) // a late release changes nothing and starts no hasher
	f.mu.RLock()
	running = f.ph.running
	f.mu.RUnlock()
	if running {
		t.Error("a hasher started after the mount's end")
	}
}

// TestSettleAllFinalClosesGoneFiles: a file removed (or published) while a handle still has it open
// keeps its data open for that handle until the release; when the mount ends first, the kernel never
// sends that release, and the mount's end closes the data. Before, it stayed open (and its disk
// space in use) for the life of the process.
func TestSettleAllFinalClosesGoneFiles(t *testing.T) {
	s, _ := newTestSet(t, t.TempDir())
	f, err := s.NewFile(Spec{Name: "a.txt", Rel: "a.txt", Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("removed while open"), 0); err != nil {
		t.Fatal(err)
	}
	f.Remove()
	f.mu.RLock()
	data := f.data
	f.mu.RUnlock()
	if _, err := data.Stat(); err != nil {
		t.Fatalf("the data of a file removed while open: %v, want it open for the handle", err)
	}
	s.SettleAll(true) // the handle's release never comes
	if _, err := data.Stat(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("the data of a removed file after the mount's end: %v, want it closed", err)
	}
}
