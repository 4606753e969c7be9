package fs_test

// The mount over remotetest.Faulty, the one fault-injecting wrapper upload, download and fs tests
// share: an injected listing failure is a clean EIO that heals once the platform answers again, and a
// read stalled on the platform finishes with the right bytes once the stall ends, with nothing left
// waiting.

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/remotetest"
)

func TestFaultyListingFailsCleanlyThenHeals(t *testing.T) {
	fusetest.CheckLeaks(t)
	env := fusetest.Mount(t, fusetest.Options{Jobs: fltJobs(), Faulty: true})
	env.Faulty.Set("JobFiles", remotetest.Fault{Err: errors.New("injected: platform broken")})
	_, err := os.ReadDir(filepath.Join(env.Dir, "jobs/Flt01"))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("readdir with JobFiles failing: %v, want EIO", err)
	}
	if env.Faulty.Calls("JobFiles") == 0 {
		t.Fatal("the listing never asked the platform")
	}
	env.Faulty.Clear("JobFiles")
	fusetest.Eventually(t, 10*time.Second, "the listing to heal", func() bool {
		ents, err := os.ReadDir(filepath.Join(env.Dir, "jobs/Flt01"))
		return err == nil && len(ents) > 0
	})
}

func TestFaultyStalledReadFinishesWhenReleased(t *testing.T) {
	fusetest.CheckLeaks(t)
	env := fusetest.Mount(t, fusetest.Options{Jobs: fltJobs(), Faulty: true})
	src := filepath.Join(env.Dir, "jobs/Flt01/case/VTK/big.vtk")
	if _, err := os.Stat(src); err != nil {
		t.Fatal(err)
	}
	want := env.Plaintext(t, env.Jobs[0].Files[0].ID)
	for _, m := range []string{"ReadRange", "ReadRangeVec"} {
		env.Faulty.Set(m, remotetest.Fault{Stall: true})
	}
	dst := filepath.Join(t.TempDir(), "out")
	done := make(chan error, 1)
	go func() {
		out, err := exec.Command("cp", src, dst).CombinedOutput()
		if err != nil {
			err = errors.New(string(out) + err.Error())
		}
		done <- err
	}()
	fusetest.Eventually(t, 10*time.Second, "a read to stall on the platform", func() bool { return env.Faulty.Stalled() > 0 })
	select {
	case err := <-done:
		t.Fatalf("cp returned while its read was stalled: %v", err)
	default:
	}
	for _, m := range []string{"ReadRange", "ReadRangeVec"} {
		env.Faulty.Clear(m)
	}
	env.Faulty.Release()
	if err := <-done; err != nil {
		t.Fatalf("cp after the stall ended: %v", err)
	}
	got, err := os.ReadFile(dst)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("copied %d bytes (%v), want the file's %d", len(got), err, len(want))
	}
	if n := env.Faulty.Stalled(); n != 0 {
		t.Fatalf("%d calls still stalled", n)
	}
}
