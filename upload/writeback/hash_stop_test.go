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
