package writeback

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/upload"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// writer is a test's view of one file of uploads/: it writes through the File and keeps the content
// the file must have.
type writer struct {
	t    *testing.T
	f    *File
	want []byte
}

func (w *writer) write(p []byte, off int64) {
	w.t.Helper()
	if _, err := w.f.WriteAt(p, off); err != nil {
		w.t.Fatal(err)
	}
	if end := off + int64(len(p)); end > int64(len(w.want)) {
		w.want = append(w.want, make([]byte, end-int64(len(w.want)))...)
	}
	copy(w.want[off:], p)
}

// append writes p at the end in writes of 128 KiB, as cp does (in smaller writes than FUSE's).
func (w *writer) append(p []byte) {
	for len(p) > 0 {
		n := min(len(p), 128<<10)
		w.write(p[:n], int64(len(w.want)))
		p = p[n:]
	}
}

func (w *writer) truncate(size int64) {
	w.t.Helper()
	if err := w.f.SetAttr(&size, nil, nil, nil); err != nil {
		w.t.Fatal(err)
	}
	if size <= int64(len(w.want)) {
		w.want = w.want[:size]
	} else {
		w.want = append(w.want, make([]byte, size-int64(len(w.want)))...)
	}
}

// hashed waits until the file's hasher has covered its whole content (a condition, checked often).
func (w *writer) hashed() {
	w.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Millisecond) {
		w.f.mu.Lock()
		sum := w.f.hashSumLocked()
		w.f.mu.Unlock()
		if sum != "" {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatal("the hasher never covered the file")
		}
	}
}

func sumOf(b []byte) string {
	s := sha512.Sum512(b)
	return hex.EncodeToString(s[:])
}

// journaledSum is the sha512 the journal holds for upload id, read from its record on disk.
func journaledSum(t *testing.T, dir, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "journal", id+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		SHA512 string `json:"sha512"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r.SHA512
}

// TestHashedAsWritten: the sha512 a file is queued with is computed as it is written, and is always
// the sum of the content queued, whatever the writer did behind the hasher: overwrites, truncates,
// holes, a rewrite from 0, a new version of a queued file. The engine is never started, so the sum in
// the journal at Enqueue is the writer's, not one the engine computed.
func TestHashedAsWritten(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		do   func(w *writer)
	}{
		{"sequential", func(w *writer) { w.append(testutil.RandomBytes(1, 3*mib+5)) }},
		{"empty", func(w *writer) {}},
		{"overwrite behind the hasher", func(w *writer) {
			w.append(testutil.RandomBytes(2, 3*mib))
			w.hashed()
			w.write(testutil.RandomBytes(3, 1000), mib+7)
		}},
		{"overwrite at 0 behind the hasher", func(w *writer) {
			w.append(testutil.RandomBytes(4, 2*mib))
			w.hashed()
			w.write([]byte("changed"), 0)
		}},
		{"truncate shorter", func(w *writer) {
			w.append(testutil.RandomBytes(5, 2*mib+100))
			w.hashed()
			w.truncate(mib + 3)
		}},
		{"truncate longer", func(w *writer) {
			w.append(testutil.RandomBytes(6, mib))
			w.hashed()
			w.truncate(2*mib + 1)
		}},
		{"rewritten from 0", func(w *writer) {
			w.append(testutil.RandomBytes(7, 2*mib))
			w.hashed()
			w.truncate(0)
			w.append(testutil.RandomBytes(8, mib+mib/2))
		}},
		{"hole", func(w *writer) {
			w.write(testutil.RandomBytes(9, 64<<10), 0)
			w.write(testutil.RandomBytes(10, 64<<10), 3*mib)
		}},
		{"backwards", func(w *writer) {
			for i := 3; i >= 0; i-- {
				w.write(testutil.RandomBytes(uint64(20+i), mib), int64(i)*mib)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s, eng := newTestSet(t, dir)
			f, err := s.NewFile(Spec{Name: "a.bin", Rel: "a.bin", Mode: 0o644})
			if err != nil {
				t.Fatal(err)
			}
			w := &writer{t: t, f: f}
			if err := f.Open(true, false); err != nil {
				t.Fatal(err)
			}
			tc.do(w)
			if err := f.Closed(); err != nil {
				t.Fatal(err)
			}
			f.Release(true)
			w.hashed()
			s.SettleAll(false)
			mustState(t, f, Queued)
			f.mu.RLock()
			id := f.id
			f.mu.RUnlock()
			if got, want := journaledSum(t, dir, id), sumOf(w.want); got != want {
				t.Fatalf("journaled sha512 %.16s..., want %.16s... (the content queued)", got, want)
			}
			st, ok := eng.Status(id)
			if !ok || st.Size != int64(len(w.want)) {
				t.Fatalf("queued %+v, want %d bytes", st, len(w.want))
			}
			data, err := os.ReadFile(st.Path)
			if err != nil || !bytes.Equal(data, w.want) {
				t.Fatalf("queued data differs from what was written (%v)", err)
			}

			// A new version of the queued file (a staging copy, then an append) is hashed again.
			if err := f.Open(true, false); err != nil {
				t.Fatal(err)
			}
			w.append([]byte("more"))
			if err := f.Closed(); err != nil {
				t.Fatal(err)
			}
			f.Release(true)
			w.hashed()
			s.SettleAll(false)
			f.mu.RLock()
			id2 := f.id
			f.mu.RUnlock()
			if id2 == id {
				t.Fatal("the new version was not queued")
			}
			if got, want := journaledSum(t, dir, id2), sumOf(w.want); got != want {
				t.Fatalf("new version: journaled sha512 %.16s..., want %.16s...", got, want)
			}
		})
	}
}

// TestEnqueueHashedSizeMismatch: a sum for another length than the file's is not journaled (the
// engine hashes the file itself before it sends anything).
func TestEnqueueHashedSizeMismatch(t *testing.T) {
	dir := t.TempDir()
	_, eng := newTestSet(t, dir)
	sf, err := eng.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sf.Write([]byte("12345")); err != nil {
		t.Fatal(err)
	}
	sf.Close()
	id, err := eng.EnqueueHashed(sf.Name(), "x.bin", 4, sumOf([]byte("1234")))
	if err != nil {
		t.Fatal(err)
	}
	if got := journaledSum(t, dir, id); got != "" {
		t.Fatalf("a sum of 4 bytes journaled for a file of 5: %.16s...", got)
	}
	if st, _ := eng.Status(id); st.State != upload.StateQueued {
		t.Fatalf("state %s", st.State)
	}
}
