package upload

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

func TestUploadSizes(t *testing.T) {
	p := newPlatform(t, false)
	cases := []struct {
		name      string
		size      int
		threshold int64 // 0 = default (small path below 8 MiB); -1 = always multipart
		parts     int64 // expected UploadPart requests; 0 = small path
	}{
		{"empty-small", 0, 0, 0},
		{"one-byte-small", 1, 0, 0},
		{"odd-small", 1_000_003, 0, 0},
		{"empty-multipart", 0, -1, 1},
		{"one-byte-multipart", 1, -1, 1},
		{"not-multiple-of-16", 100_017, -1, 1},
		{"exactly-one-part", testPart, -1, 1},
		{"two-parts-exact", 2 * testPart, -1, 2},
		{"several-parts", 3*testPart + 12345, -1, 4},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := p.engineOpts(t.TempDir())
			o.SmallThreshold = tc.threshold
			h := startEngine(t, o)
			p.e.ResetCounters()
			data := randomData(uint64(i), tc.size)
			id := enqueue(t, h.eng, tc.name+".bin", data)
			f := h.wait(id)
			p.checkPublished(f, tc.name+".bin", data)
			c := p.e.Counters()
			if got := c.Requests[emulator.EndpointS3UploadPart]; got != tc.parts {
				t.Errorf("%d parts sent, want %d", got, tc.parts)
			}
			if tc.parts == 0 && c.Requests[emulator.EndpointUpload] != 1 {
				t.Errorf("%d small uploads, want 1", c.Requests[emulator.EndpointUpload])
			}
			// Staging copy and journal are gone.
			for _, d := range []string{"pending", "journal"} {
				if ents, _ := os.ReadDir(filepath.Join(o.Dir, d)); len(ents) != 0 {
					t.Errorf("%s not empty after publishing: %v", d, ents)
				}
			}
			if h.eng.Pending() != 0 {
				t.Errorf("Pending %d", h.eng.Pending())
			}
			st, ok := h.eng.Status(id)
			if !ok || st.State != StateDone || st.FileID != f.ID || st.Done != int64(tc.size) {
				t.Errorf("status after publishing: %+v", st)
			}
		})
	}
}

// TestUploadResumeAfterCrash stops an engine while one part is held back (its neighbours go through),
// starts a new engine on the same folder and checks that only that part is sent after the restart.
func TestUploadResumeAfterCrash(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tornLast bool // the last journaled part is lost as by a crash between S3's answer and the fsync
	}{{"clean", false}, {"torn-journal", true}} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			data := randomData(42, 6*testPart+777) // 7 parts
			o := p.engineOpts(dir)
			o.SmallThreshold = -1
			b := newBlocker(4)
			o.beforePart = b.hook
			h1 := startEngine(t, o)
			id := enqueue(t, h1.eng, "big.bin", data)
			b.waitReached(t)
			// Let the other parts in flight finish, then "crash".
			waitFor(t, func() bool { return p.requests(emulator.EndpointS3UploadPart) >= 6 })
			waitFor(t, func() bool { return partsJournaled(t, dir, id) >= 6 })
			h1.eng.Close()
			if tc.tornLast {
				tearLastLine(t, filepath.Join(dir, "journal", id+".parts"))
			}
			before := p.requests(emulator.EndpointS3UploadPart)

			o.beforePart = nil
			h2 := startEngine(t, o)
			f := h2.wait(id)
			p.checkPublished(f, "big.bin", data)
			after := p.requests(emulator.EndpointS3UploadPart)
			if after-before != 1 {
				t.Fatalf("%d parts sent after the restart, want 1 (the one held back)", after-before)
			}
			if total := after; total > 7+1 {
				t.Fatalf("%d part requests for 7 parts: more than one part sent twice", total)
			}
		})
	}
}

func TestUploadResumeAfterEmulatorRestart(t *testing.T) {
	p := newPlatform(t, true)
	data := randomData(7, 4*testPart+5) // 5 parts
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = -1
	o.UploadParallel = 1
	b := newBlocker(3)
	o.beforePart = b.hook
	h := startEngine(t, o)
	id := enqueue(t, h.eng, "restart.bin", data)
	b.waitReached(t)
	p.restart() // same data dir, same address; the engine keeps running
	close(b.release)
	f := h.wait(id)
	p.checkPublished(f, "restart.bin", data)
	if n := p.requests(emulator.EndpointS3UploadPart); n != 3 {
		t.Fatalf("%d parts sent to the restarted platform, want 3", n)
	}
}

func TestUploadNoSuchUploadStartsAgain(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	data := randomData(8, 2*testPart+99)
	o := p.engineOpts(dir)
	o.SmallThreshold = -1
	o.UploadParallel = 1
	b := newBlocker(2)
	o.beforePart = b.hook
	h1 := startEngine(t, o)
	id := enqueue(t, h1.eng, "gone.bin", data)
	b.waitReached(t)
	h1.eng.Close()
	// The storage forgets the upload (expired, aborted elsewhere).
	r, err := readRecord(filepath.Join(dir, "journal", id+".json"), filepath.Join(dir, "pending"))
	if err != nil {
		t.Fatal(err)
	}
	if err := h1.eng.abort(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	o.beforePart = nil
	h2 := startEngine(t, o)
	f := h2.wait(id)
	p.checkPublished(f, "gone.bin", data)
	if n := p.requests(emulator.EndpointS3CreateMultipart); n != 2 {
		t.Fatalf("%d multipart uploads created, want 2", n)
	}
	if f.PathParts.Path == r.ObjectKey {
		t.Fatal("restarted upload reused the forgotten object key")
	}
}

func TestUploadCancelAborts(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	h, id := startMidMultipart(t, p, dir, "cancel.bin", randomData(9, 2*testPart))
	if err := h.eng.Cancel(id); err != nil {
		t.Fatal(err)
	}
	if n := p.requests(emulator.EndpointS3Abort); n != 1 {
		t.Fatalf("%d aborts, want 1", n)
	}
	journalEmpty(t, dir)
	if h.eng.Pending() != 0 || h.eng.Cancel(id) != ErrUnknown {
		t.Fatal("cancelled upload still known")
	}
	if n := p.requests(emulator.EndpointRegister); n != 0 {
		t.Fatalf("cancelled upload registered %d times", n)
	}
}

func TestUploadRenameBeforeCompletion(t *testing.T) {
	p := newPlatform(t, false)
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = 1 << 20
	b := newBlocker(2)
	o.beforePart = b.hook
	h := startEngine(t, o)
	big := randomData(10, 2*testPart+1)
	id := enqueue(t, h.eng, ".big.bin.tmp", big)
	b.waitReached(t)
	if err := h.eng.Rename(id, "big.bin"); err != nil {
		t.Fatal(err)
	}
	close(b.release)
	p.checkPublished(h.wait(id), "big.bin", big)

	// A small one renamed before the engine gets to it.
	o2 := p.engineOpts(t.TempDir())
	eng, err := New(o2)
	if err != nil {
		t.Fatal(err)
	}
	small := randomData(11, 1000)
	sid := enqueue(t, eng, "x~", small)
	if err := eng.Rename(sid, "x.txt"); err != nil {
		t.Fatal(err)
	}
	eng.Close()
	h2 := startEngine(t, o2)
	p.checkPublished(h2.wait(sid), "x.txt", small)
	if err := h2.eng.Rename(sid, "late"); err != ErrUnknown {
		t.Fatalf("rename after publishing: %v", err)
	}
}

func TestUploadDamagedKeptAside(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	o := p.engineOpts(dir)
	o.SmallThreshold = -1
	o.UploadParallel = 1
	b := newBlocker(1)
	o.beforePart = b.hook
	h1 := startEngine(t, o)
	changed := enqueue(t, h1.eng, "changed.bin", randomData(12, testPart+10))
	b.waitReached(t) // hashed and journaled
	h1.eng.Close()
	// A second upload whose record is garbage, with its data.
	garbled := "0123456789abcdef0123"
	if err := os.WriteFile(filepath.Join(dir, "journal", garbled+".json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pending", garbled), []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The staging data of the first changes behind the engine's back.
	data := filepath.Join(dir, "pending", changed)
	fh, err := os.OpenFile(data, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte{'!'}, 5)
	fh.Close()

	o.beforePart = nil
	h2 := startEngine(t, o)
	waitFor(t, func() bool { return len(damagedOf(h2.eng)) == 2 })
	for _, s := range damagedOf(h2.eng) {
		if s.Error == "" {
			t.Errorf("damaged %s without a reason", s.ID)
		}
	}
	for _, name := range []string{garbled + ".json", garbled + ".data", garbled + ".reason", changed + ".json", changed + ".data", changed + ".reason"} {
		if !fileExists(filepath.Join(dir, "damaged", name)) {
			t.Errorf("damaged/%s missing", name)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "damaged", garbled+".data")); string(b) != "precious" {
		t.Error("damaged data not kept")
	}
	if n := p.requests(emulator.EndpointRegister); n != 0 {
		t.Fatalf("damaged upload registered")
	}
	if h2.eng.Pending() != 0 {
		t.Fatalf("Pending %d", h2.eng.Pending())
	}
}

// TestUploadEnqueueCutBeforeMove: a crash between journaling and moving the data is finished on load.
func TestUploadEnqueueCutBeforeMove(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	o := p.engineOpts(dir)
	eng, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	data := randomData(13, 5000)
	src := filepath.Join(eng.StagingDir(), "w-cut")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := record{ID: "00112233445566778899", Name: "cut.txt", Source: src, Data: filepath.Join(dir, "pending", "00112233445566778899"),
		Size: int64(len(data)), State: StateQueued, Created: time.Now()}
	if err := eng.j.save(&r); err != nil {
		t.Fatal(err)
	}
	eng.Close()
	h := startEngine(t, o)
	p.checkPublished(h.wait(r.ID), "cut.txt", data)
}

func TestUploadFaultsStillExact(t *testing.T) {
	p := newPlatform(t, false)
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = 1 << 20
	h := startEngine(t, o)
	p.e.SetFaults(emulator.Faults{ErrorRate: 0.1, ThrottleRate: 0.05, CutRate: 0.1, RetryAfter: time.Second, Seed: 5})
	big := randomData(14, 4*testPart+333)
	small := randomData(15, 70_001)
	bid := enqueue(t, h.eng, "faulty-big.bin", big)
	sid := enqueue(t, h.eng, "faulty-small.bin", small)
	fb, fs := h.wait(bid), h.wait(sid)
	p.e.SetFaults(emulator.Faults{})
	p.checkPublished(fb, "faulty-big.bin", big)
	p.checkPublished(fs, "faulty-small.bin", small)
	c := p.e.Counters()
	t.Logf("faults injected: %v; part requests %d for 5 parts", c.Faults, c.Requests[emulator.EndpointS3UploadPart])
	if len(c.Faults) == 0 {
		t.Fatal("no fault injected")
	}
	// One file each in the library: retries never published twice.
	files, err := p.c.LibraryFiles(context.Background(), "faulty-")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasPrefix(f.Name, "faulty-") {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d library files, want 2", n)
	}
}

func TestUploadStatusProgress(t *testing.T) {
	p := newPlatform(t, false)
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = -1
	o.UploadParallel = 1
	b := newBlocker(3)
	o.beforePart = b.hook
	h := startEngine(t, o)
	id := enqueue(t, h.eng, "progress.bin", randomData(16, 3*testPart))
	b.waitReached(t)
	st, ok := h.eng.Status(id)
	if !ok || st.State != StateUploading || st.Done != 2*testPart || st.Size != 3*testPart || !st.Multipart || st.Path == "" {
		t.Fatalf("status mid-upload: %+v", st)
	}
	if b, err := os.ReadFile(st.Path); err != nil || len(b) != 3*testPart {
		t.Fatalf("pending data not readable: %v", err)
	}
	close(b.release)
	h.wait(id)
}

func TestUploadFailedStaysAndRetries(t *testing.T) {
	p := newPlatform(t, false)
	o := p.engineOpts(t.TempDir())
	o.FailAfter = 2
	o.RetryMin, o.RetryMax = 50*time.Millisecond, 100*time.Millisecond
	h := startEngine(t, o)
	p.e.SetKeyRevoked(true)
	id := enqueue(t, h.eng, "later.txt", []byte("hello"))
	waitFor(t, func() bool { s, _ := h.eng.Status(id); return s.State == StateFailed })
	s, _ := h.eng.Status(id)
	if !strings.Contains(s.Error, "401") && !strings.Contains(strings.ToLower(s.Error), "unauthorized") {
		t.Errorf("failed reason %q", s.Error)
	}
	p.e.SetKeyRevoked(false)
	p.checkPublished(h.wait(id), "later.txt", []byte("hello"))
}

// waitFor waits up to a minute for cond, as the other packages' tests do (testutil.Eventually).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, "the condition", cond)
}

func partsJournaled(t *testing.T, dir, id string) int {
	j := journal{dir: filepath.Join(dir, "journal")}
	ps, err := j.loadParts(id)
	if err != nil {
		t.Fatal(err)
	}
	return len(ps)
}

// tearLastLine cuts the last line of a file in half, as a crash mid-append would.
func tearLastLine(t *testing.T, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = b[:len(b)-1]
	i := strings.LastIndexByte(string(b), '\n')
	if err := os.WriteFile(path, b[:i+1+(len(b)-i-1)/2], 0o600); err != nil {
		t.Fatal(err)
	}
}

func damagedOf(e *Engine) []Status {
	var out []Status
	for _, s := range e.Snapshot() {
		if s.State == StateDamaged {
			out = append(out, s)
		}
	}
	return out
}

// UploadParallel bounds the parts in flight of all uploads together (so the ciphertext held in
// memory does not grow with the number of files): while one upload's part is held in flight with
// UploadParallel 1, the other running upload's first part waits for it instead of being sent.
func TestUploadParallelBoundsAllUploads(t *testing.T) {
	p := newPlatform(t, false)
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = -1
	o.UploadParallel = 1
	o.Files = 2
	type part struct {
		id string
		n  int32
	}
	arrived, waits := make(chan part, 100), make(chan part, 100)
	release := make(chan struct{})
	o.beforePart = func(ctx context.Context, id string, n int32) error {
		arrived <- part{id, n}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	o.partWaits = func(id string, n int32) { waits <- part{id, n} }
	h := startEngine(t, o)
	a, b := randomData(21, 2*testPart+1), randomData(22, 2*testPart+2)
	ids := []string{enqueue(t, h.eng, "a.bin", a), enqueue(t, h.eng, "b.bin", b)}
	var first part
	select {
	case first = <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("no part sent")
	}
	for other := false; !other; {
		select {
		case second := <-arrived:
			t.Fatalf("parts %+v and %+v in flight at once with UploadParallel 1", first, second)
		case w := <-waits: // the next part of the same upload may wait first
			other = w.id != first.id
		case <-time.After(60 * time.Second):
			t.Fatal("the other upload neither sent a part nor waited")
		}
	}
	close(release)
	p.checkPublished(h.wait(ids[0]), "a.bin", a)
	p.checkPublished(h.wait(ids[1]), "b.bin", b)
}

// A part that fails while the next part waits for its token: the token the waiting part then takes
// is given back when the attempt stops, or the engine would have a slot fewer for every such
// failure, and with UploadParallel 1 the retry could never send again.
func TestUploadFailedPartGivesBackItsToken(t *testing.T) {
	p := newPlatform(t, false)
	o := p.engineOpts(t.TempDir())
	o.SmallThreshold = -1
	o.UploadParallel = 1
	waiting := make(chan struct{}, 100)
	var failed atomic.Bool
	o.partWaits = func(string, int32) { waiting <- struct{}{} }
	o.beforePart = func(ctx context.Context, _ string, n int32) error {
		if n != 1 || failed.Load() {
			return nil
		}
		select { // fail part 1 once part 2 waits for the token it holds
		case <-waiting:
		case <-ctx.Done():
			return ctx.Err()
		}
		failed.Store(true)
		return errors.New("injected failure of part 1")
	}
	h := startEngine(t, o)
	data := randomData(23, 3*testPart+3)
	id := enqueue(t, h.eng, "retry.bin", data)
	p.checkPublished(h.wait(id), "retry.bin", data)
	if !failed.Load() {
		t.Fatal("part 1 never failed")
	}
}

// TestUploadWrongWriterSumHashedAgain: a sum handed over by the file's writer (EnqueueHashed) is taken
// without hashing the file; should it be wrong, the platform refuses the file (400, a sha512 mismatch),
// and a refusal is for good. Before it is, the engine hashes the data itself once and tries again
// with its own sum: a mistake of the writer's hasher costs one attempt, never the file.
func TestUploadWrongWriterSumHashedAgain(t *testing.T) {
	p := newPlatform(t, false)
	for _, tc := range []struct {
		name      string
		threshold int64
	}{{"small", 0}, {"multipart", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			o := p.engineOpts(t.TempDir())
			o.SmallThreshold = tc.threshold
			h := startEngine(t, o)
			data := randomData(77, 3*testPart+5)
			f, err := h.eng.CreateStaging()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(data); err != nil {
				t.Fatal(err)
			}
			f.Close()
			other := sha512.Sum512(randomData(78, len(data))) // the right length, the wrong content
			id, err := h.eng.EnqueueHashed(f.Name(), tc.name+".bin", int64(len(data)), hex.EncodeToString(other[:]))
			if err != nil {
				t.Fatal(err)
			}
			p.checkPublished(h.wait(id), tc.name+".bin", data)
		})
	}
}
