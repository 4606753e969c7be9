package main

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// restartable is an emulator with a data folder, served on a fixed loopback address so it can be
// stopped and started again in place (a platform restart).
type restartable struct {
	t    *testing.T
	dir  string
	addr string
	emu  *emulator.Emulator
	srv  *httptest.Server
	// Parts sent successfully by emulators already stopped.
	partsBefore int64
	faults      emulator.Faults
}

func newRestartable(t *testing.T, f emulator.Faults) *restartable {
	p := &restartable{t: t, dir: t.TempDir(), faults: f}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *restartable) start() {
	p.t.Helper()
	emu, err := emulator.New(emulator.Options{DataDir: p.dir, APIKey: "e2e-key-0123456789", Faults: p.faults})
	if err != nil {
		p.t.Fatal(err)
	}
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	for range 200 { // the old server's port may take a moment to be free again
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(emu)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	p.emu, p.srv, p.addr = emu, srv, l.Addr().String()
}

func (p *restartable) stop() {
	if p.srv != nil {
		p.partsBefore += p.emu.Counters().Statuses[emulator.EndpointS3UploadPart][200]
		p.srv.CloseClientConnections()
		p.srv.Close()
		p.emu.Close()
		p.srv = nil
	}
}

func (p *restartable) url() string { return "http://" + p.addr }

// partsOK is the number of parts the platform accepted, over every restart.
func (p *restartable) partsOK() int64 {
	return p.partsBefore + p.emu.Counters().Statuses[emulator.EndpointS3UploadPart][200]
}

// foregroundMount runs `rescalefs mount --foreground` on cacheDir and waits until uploads/ is there.
func foregroundMount(t *testing.T, p *restartable, mnt, cacheDir string, stderr io.Writer, extra ...string) *exec.Cmd {
	t.Helper()
	args := append([]string{"mount", "--foreground", "--cache-dir", cacheDir, "--poll", "1s"}, extra...)
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + p.emu.APIKey(), "RESCALE_API_URL=" + p.url()}, append(args, mnt)...)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if _, ok := mountedAt(mnt); ok {
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	waitFor(t, func() bool {
		fstype, ok := mountedAt(mnt)
		return ok && fstype == "fuse.rescalefs"
	})
	return cmd
}

// waitPublished polls the library for name and returns its file.
func waitPublished(t *testing.T, p *restartable, name string, within time.Duration) remote.File {
	t.Helper()
	c, err := remote.New(remote.Options{BaseURL: p.url(), APIKey: p.emu.APIKey()})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		files, err := c.LibraryFiles(context.Background(), name)
		if err == nil {
			for _, f := range files {
				if f.Name == name {
					return f
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not published within %v (last error %v)", name, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func plaintextSHA(t *testing.T, emu *emulator.Emulator, id string) string {
	t.Helper()
	rc, _, err := emu.Plaintext(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha512.New()
	if _, err := io.Copy(h, rc); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// bigFile writes a file of several 16 MiB parts (the mount's part size) in dir.
func bigFile(t *testing.T, dir string, parts int) (string, string) {
	t.Helper()
	path := filepath.Join(dir, "big.bin")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha512.New()
	rng := rand.New(rand.NewPCG(9, 9))
	buf := make([]byte, 1<<20)
	size := parts*upload.DefaultPartSize - 12345
	for written := 0; written < size; {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		n := min(len(buf), size-written)
		if _, err := f.Write(buf[:n]); err != nil {
			t.Fatal(err)
		}
		h.Write(buf[:n])
		written += n
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}

func copyInto(t *testing.T, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
}

// TestUploadSurvivesKill: kill -9 of the mount in the middle of a multi-part upload; the next mount on
// the same cache folder resumes it; at most one part (the one in flight, --upload-parallel 1) is sent
// twice and the published file is byte-identical.
func TestUploadSurvivesKill(t *testing.T) {
	const parts = 5
	p := newRestartable(t, emulator.Faults{Bandwidth: 24 << 20}) // a part takes a while
	mnt := filepath.Join(t.TempDir(), "mnt")
	cacheDir := t.TempDir()
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	src, sum := bigFile(t, t.TempDir(), parts)

	var log1 bytes.Buffer
	cmd := foregroundMount(t, p, mnt, cacheDir, &log1, "--upload-parallel", "1")
	copyInto(t, src, filepath.Join(mnt, "uploads", "big.bin"))
	waitFor60(t, "two parts uploaded", func() bool { return p.partsOK() >= 2 })
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if out, err := exec.Command("umount", "-l", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount -l after kill -9: %v: %s", err, out)
	}
	before := p.partsOK()
	if before >= parts {
		t.Fatalf("all %d parts were sent before the kill: slow the emulator down", before)
	}

	var log2 bytes.Buffer
	cmd2 := foregroundMount(t, p, mnt, cacheDir, &log2, "--upload-parallel", "1")
	f := waitPublished(t, p, "big.bin", 3*time.Minute)
	if got := plaintextSHA(t, p.emu, f.ID); got != sum || f.SHA512() != sum {
		t.Fatalf("published sha512 %.16s (registered %.16s), want %.16s", got, f.SHA512(), sum)
	}
	if sent := p.partsOK(); sent > parts+1 {
		t.Errorf("%d parts sent for %d (before the kill: %d): more than one sent twice", sent, parts, before)
	} else {
		t.Logf("parts accepted: %d before the kill, %d in all, for %d parts", before, sent, parts)
	}
	if n := p.emu.Counters().Requests[emulator.EndpointS3ListParts]; n == 0 {
		t.Error("the resumed upload did not check ListParts")
	}
	waitFor60(t, "big.bin gone from uploads/", func() bool {
		_, err := os.Stat(filepath.Join(mnt, "uploads", "big.bin"))
		return os.IsNotExist(err)
	})
	stopMount(t, cmd2, &log2)
}

// TestUploadSurvivesPlatformRestart: the platform restarts (same data, same address) in the middle of
// a multi-part upload; the mount retries, resumes and publishes the same bytes.
func TestUploadSurvivesPlatformRestart(t *testing.T) {
	const parts = 5
	p := newRestartable(t, emulator.Faults{Bandwidth: 24 << 20})
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	src, sum := bigFile(t, t.TempDir(), parts)
	var logb bytes.Buffer
	cmd := foregroundMount(t, p, mnt, t.TempDir(), &logb, "--upload-parallel", "1")
	copyInto(t, src, filepath.Join(mnt, "uploads", "big.bin"))
	waitFor60(t, "two parts uploaded", func() bool { return p.partsOK() >= 2 })
	p.stop()
	p.start()
	f := waitPublished(t, p, "big.bin", 3*time.Minute)
	if got := plaintextSHA(t, p.emu, f.ID); got != sum {
		t.Fatalf("published sha512 %.16s, want %.16s", got, sum)
	}
	if sent := p.partsOK(); sent > parts+1 {
		t.Errorf("%d parts accepted for %d: more than one sent twice", sent, parts)
	}
	stopMount(t, cmd, &logb)
}

// TestUnmountWithPendingUploads: an unmount while an upload cannot finish says how many are pending;
// `rescalefs status` lists it meanwhile; the next mount publishes it.
func TestUnmountWithPendingUploads(t *testing.T) {
	p := newRestartable(t, emulator.Faults{ErrorRate: 1, Endpoints: []string{emulator.EndpointUpload}})
	mnt := filepath.Join(t.TempDir(), "mnt")
	cacheDir := t.TempDir()
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	noMountsLeftUnder(t, mnt)
	var logb bytes.Buffer
	cmd := foregroundMount(t, p, mnt, cacheDir, &logb)
	data := []byte("results of the night\n")
	if err := os.WriteFile(filepath.Join(mnt, "uploads", "notes.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out []byte
	// Settling first (status lists it by name then too), then pending.
	waitFor60(t, "status shows the upload", func() bool {
		var err error
		out, err = rescalefsCmd(t, nil, "status", mnt).Output()
		return err == nil && bytes.Contains(out, []byte("notes.txt")) && bytes.Contains(out, []byte("1 uploads pending"))
	})
	if !bytes.Contains(out, []byte("1 uploads pending")) {
		t.Errorf("status output:\n%s", out)
	}
	if code := rescalefsCmd(t, nil, "status", filepath.Join(mnt, "jobs")).Run(); code == nil {
		t.Error("status of a folder that is no mount succeeded")
	}
	stopMount(t, cmd, &logb)
	if !strings.Contains(logb.String(), "1 uploads pending; they resume on the next mount") {
		t.Errorf("unmount did not say an upload is pending:\n%s", logb.String())
	}
	p.faults = emulator.Faults{}
	p.emu.SetFaults(p.faults)
	var log2 bytes.Buffer
	cmd2 := foregroundMount(t, p, mnt, cacheDir, &log2)
	f := waitPublished(t, p, "notes.txt", time.Minute)
	sum := sha512.Sum512(data)
	if f.SHA512() != hex.EncodeToString(sum[:]) {
		t.Errorf("published sha512 differs")
	}
	stopMount(t, cmd2, &log2)
}

func stopMount(t *testing.T, cmd *exec.Cmd, logb *bytes.Buffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("mount exit: %v\n%s", err, logb.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done // reaped here, so foregroundMount's cleanup does not Wait a second time
		t.Fatalf("no exit after SIGTERM\n%s", logb.String())
	}
}

func waitFor60(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}
