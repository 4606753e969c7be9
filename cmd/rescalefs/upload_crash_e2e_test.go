package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestUploadClosedBeforeKill: a file written into uploads/ and closed, then the mount killed with
// kill -9 before its settle time is over (so before it was queued), is published byte-identical by the
// next mount on the same cache folder. A file still open for writing at the kill was cut off: the next
// mount shows it back in uploads/, as far as it was written, and does not publish it.
func TestUploadClosedBeforeKill(t *testing.T) {
	p := newRestartable(t, emulator.Faults{})
	mnt := filepath.Join(t.TempDir(), "mnt")
	cacheDir := t.TempDir()
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)

	// A settle time far longer than the test: the file cannot have been queued before the kill.
	var log1 bytes.Buffer
	cmd := foregroundMount(t, p, mnt, cacheDir, &log1, "--upload-settle", "1h")
	up := filepath.Join(mnt, "uploads")
	if err := os.Mkdir(filepath.Join(up, "run1"), 0o755); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	data := make([]byte, 3<<20+17)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(filepath.Join(up, "run1", "closed.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	half, err := os.OpenFile(filepath.Join(up, "open.bin"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := half.Write([]byte("the first half of a file")); err != nil {
		t.Fatal(err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	_ = half.Close() // the mount is gone: the writer learns its file was cut off
	if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount -l after kill -9: %v: %s", err, out)
	}

	var log2 bytes.Buffer
	cmd2 := foregroundMount(t, p, mnt, cacheDir, &log2)
	f := waitPublished(t, p, "closed.bin", 2*time.Minute)
	sum := sha512.Sum512(data)
	if got := plaintextSHA(t, p.emu, f.ID); got != hex.EncodeToString(sum[:]) || f.SHA512() != got {
		t.Fatalf("published sha512 %.16s (registered %.16s), want %.16x", got, f.SHA512(), sum)
	}
	waitFor60(t, "closed.bin gone from uploads/", func() bool {
		_, err := os.Stat(filepath.Join(up, "run1", "closed.bin"))
		return os.IsNotExist(err)
	})

	// The cut-off file is shown back as far as it was written, and says why it is not uploaded.
	openPath := filepath.Join(up, "open.bin")
	if got, err := os.ReadFile(openPath); err != nil || string(got) != "the first half of a file" {
		t.Fatalf("open.bin after the restart: %q, %v\n%s", got, err, log2.String())
	}
	buf := make([]byte, 512)
	n, err := unix.Getxattr(openPath, "user.rescale.upload", buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "not uploaded: cut off") {
		t.Errorf("user.rescale.upload of open.bin: %q, %v", buf[:max(n, 0)], err)
	}
	c, err := remote.New(remote.Options{BaseURL: p.url(), APIKey: p.emu.APIKey()})
	if err != nil {
		t.Fatal(err)
	}
	files, err := c.LibraryFiles(context.Background(), "open.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name == "open.bin" {
			t.Fatalf("the half-written open.bin was published")
		}
	}
	stopMount(t, cmd2, &log2)
	if !strings.Contains(log2.String(), "cut off mid-write") {
		t.Errorf("the restart did not log the cut-off file:\n%s", log2.String())
	}
}
