package fusetest

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// UploadOptions make uploads/ writable in a test mount. Zero values are test-friendly defaults.
type UploadOptions struct {
	Enabled        bool
	Dir            string        // the engine's folder (staging, pending, journal); default t.TempDir()
	Settle         time.Duration // default 50ms
	Hold           time.Duration // how long a name like rsync's temporaries waits for a rename; default a minute
	PartSize       int64         // default 5 MiB (S3's minimum)
	SmallThreshold int64         // default the engine's; < 0: every file multipart
	Parallel       int           // parts in flight; default 3
}

// newEngine builds the upload engine of a test mount (started once mounted, closed after unmount).
func (e *Env) newEngine(t testing.TB, o UploadOptions, logger *slog.Logger) *upload.Engine {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.PartSize == 0 {
		o.PartSize = upload.MinPartSize
	}
	if o.Parallel == 0 {
		o.Parallel = 3
	}
	var m atomic.Pointer[fs.Mounted]
	eng, err := upload.New(upload.Options{
		Client: e.Client, Dir: o.Dir, PartSize: o.PartSize, SmallThreshold: o.SmallThreshold,
		UploadParallel: o.Parallel, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond,
		S3: remote.S3Options{MaxBackoff: 10 * time.Millisecond}, Logger: logger,
		OnDone: func(st upload.Status, f remote.File) {
			e.pubMu.Lock()
			e.published = append(e.published, st)
			e.pubMu.Unlock()
			if mm := m.Load(); mm != nil {
				mm.UploadDone(st, f)
			}
		},
	})
	if err != nil {
		t.Fatalf("upload engine: %v", err)
	}
	e.Engine = eng
	t.Cleanup(func() {
		if mm := m.Load(); mm != nil {
			mm.SettleUploads()
		}
		eng.Close()
		if mm := m.Load(); mm != nil {
			mm.WaitUploads()
		}
	})
	e.setMounted = func(mm *fs.Mounted) { m.Store(mm) }
	return eng
}

// Published lists the uploads the platform confirmed, in order.
func (e *Env) Published() []upload.Status {
	e.pubMu.Lock()
	defer e.pubMu.Unlock()
	return append([]upload.Status(nil), e.published...)
}

// WaitPublished waits until an upload named name is confirmed and returns the file's id.
func (e *Env) WaitPublished(t testing.TB, name string, within time.Duration) string {
	t.Helper()
	var id string
	Eventually(t, within, "upload of "+name+" published", func() bool {
		for _, s := range e.Published() {
			if s.Name == name {
				id = s.FileID
				return true
			}
		}
		return false
	})
	return id
}
