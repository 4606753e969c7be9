package fs_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// TestUploadDoneDuringUnmount: the engine's confirmation of an upload that arrives while the mount
// shuts down is booked before the shutdown's wait step returns, and arms no timer on the closed data
// of a mount that is gone; nothing is left running. UploadDone's goroutine used to be waited for by
// nobody, and could arm a settle timer after the unmount (a confirmation under a name the file had
// left re-armed it then; the engine now publishes such a file again itself).
func TestUploadDoneDuringUnmount(t *testing.T) {
	fusetest.CheckLeaks(t)
	env := uploadEnv(t, fusetest.Options{})
	// Frozen: the upload stays on its way until the engine closes.
	env.Emulator.SetFaults(emulator.Faults{Frozen: true})
	t.Cleanup(func() { env.Emulator.SetFaults(emulator.Faults{}) })
	if err := os.WriteFile(filepath.Join(env.Dir, "uploads", "late.txt"), []byte("late\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var id string
	fusetest.Eventually(t, 20*time.Second, "late.txt queued", func() bool {
		for _, s := range env.Engine.Snapshot() {
			if s.Name == "late.txt" && env.Mount.UploadAwaited(s.ID) {
				id = s.ID
				return true
			}
		}
		return false
	})

	// The shutdown order of cmd/rescalefs/life.go: unmount, settle, then the engine, which confirms
	// the upload as it closes, then the wait.
	fusetest.Unmount(t, env.Mount, env.Dir)
	env.Mount.SettleUploads()
	env.Mount.UploadDone(upload.Status{ID: id, Name: "late.txt", State: upload.StateDone},
		remote.File{ID: "f-late", Name: "late.txt"})
	env.Engine.Close()
	env.Mount.WaitUploads()

	if env.Mount.UploadAwaited(id) {
		t.Error("the shutdown's wait returned before the confirmation was booked")
	}
	if n := env.Mount.UploadTimers(); n != 0 {
		t.Errorf("%d timers armed on the files of a mount that is gone", n)
	}
}
