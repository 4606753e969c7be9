package writeback

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// crashImages is the real engine; while armed, each call that changes the engine folder is followed
// by a copy of the folder (an image): what a crash (kill -9 of the mount) right after that call would
// leave for the next start.
type crashImages struct {
	*upload.Engine
	t   *testing.T
	dir string

	mu     sync.Mutex // guards armed and images
	armed  bool
	images []string
}

// newCrashImages is a real engine (not started: what is queued stays queued) in a folder of its own,
// closed when the test ends, with no image taken yet.
func newCrashImages(t *testing.T, c *remote.Client) *crashImages {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "engine")
	eng, err := upload.New(upload.Options{Client: c, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return &crashImages{Engine: eng, t: t, dir: dir}
}

// rewrittenQueued is a file a.txt queued in a Set over ce (not started: it stays queued), opened
// again and overwritten with v2, still open: the new version of a queued upload.
func rewrittenQueued(t *testing.T, ce *crashImages, v2 string) (*Set, *File) {
	t.Helper()
	s := NewSet(Options{Engine: ce, Settle: time.Hour})
	f, _ := queuedFile(t, s, "a.txt")
	if err := f.Open(true, false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(v2), 0); err != nil {
		t.Fatal(err)
	}
	return s, f
}

// during takes an image after each engine call action makes, and returns them in order.
func (c *crashImages) during(action func()) []string {
	c.mu.Lock()
	c.armed = true
	c.mu.Unlock()
	action()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	return c.images
}

// stop waits for the cancels' background parts and closes the engine: the images are all taken, and
// nothing more is written into the folder the next start will use.
func (c *crashImages) stop() {
	c.t.Helper()
	select {
	case <-c.Engine.CancelsDone():
	case <-time.After(time.Minute):
		c.t.Fatal("the cancel never finished")
	}
	c.Engine.Close()
}

func (c *crashImages) snap() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.armed {
		return
	}
	img := fmt.Sprintf("%s.crash%d", c.dir, len(c.images))
	if err := testutil.CopyTree(c.dir, img); err != nil {
		c.t.Fatal(err)
	}
	c.images = append(c.images, img)
}

func (c *crashImages) CreateStaging() (*os.File, error) {
	defer c.snap()
	return c.Engine.CreateStaging()
}

func (c *crashImages) RecordStaging(p string, r upload.StagingRecord) error {
	defer c.snap()
	return c.Engine.RecordStaging(p, r)
}

func (c *crashImages) DiscardStaging(p string) error {
	defer c.snap()
	return c.Engine.DiscardStaging(p)
}

func (c *crashImages) CancelNoWait(id string) error {
	defer c.snap()
	return c.Engine.CancelNoWait(id)
}

func (c *crashImages) CancelVersion(id, p string) error {
	defer c.snap()
	return c.Engine.CancelVersion(id, p)
}

func (c *crashImages) EnqueueVersion(p, name string, size int64, sum, replaces string) (string, error) {
	defer c.snap()
	return c.Engine.EnqueueVersion(p, name, size, sum, replaces)
}

func (c *crashImages) Handover(from, to string) error {
	defer c.snap()
	return c.Engine.Handover(from, to)
}

// TestRemoveNewVersionThenCrash: a queued file is rewritten (the new version closed, waiting its
// settle time: a staging file recorded as replacing the queued upload), then removed, and the mount
// crashes at any point of the removal: after each engine call unlink makes (an image of the engine
// folder taken right after it). The next start from any image must publish neither version, and
// show neither again (no staging file for the fs layer to show or queue). Before, unlink discarded
// the new version's staging file first and cancelled the old version second: a crash between the
// two left the old version queued, and the next start published a file the user had removed.
func TestRemoveNewVersionThenCrash(t *testing.T) {
	for _, closed := range []bool{true, false} {
		t.Run(fmt.Sprintf("closed=%v", closed), func(t *testing.T) {
			emu, c := platform(t)
			ce := newCrashImages(t, c)
			dir := ce.dir
			_, f := rewrittenQueued(t, ce, "version 2")
			if closed {
				f.Release(true)
				mustState(t, f, Settling)
			}

			images := ce.during(func() { f.Remove() })
			if !closed {
				f.Release(true)
			}
			if len(images) == 0 {
				t.Fatal("the removal made no engine call")
			}
			ce.stop()

			for i, img := range images {
				// The next start, from what a crash right after engine call i left.
				published, staged := startFromImage(t, c, img, dir)
				if len(staged) != 0 {
					t.Errorf("crash after call %d: the next start finds the removed file's new version to show or queue: %+v", i+1, staged)
				}
				if len(published) != 0 {
					t.Errorf("crash after call %d: the removed file was published on the next start: %v", i+1, published)
				}
			}
			if n := emu.Counters().Requests[emulator.EndpointUpload]; n != 0 {
				t.Errorf("%d uploads reached the platform, want none", n)
			}
		})
	}
}

// TestRewriteThenCrash: a queued file is rewritten and the new version queued (SettleAll), which
// queues it and then cancels the old version; the mount crashes after any of the engine calls this
// makes (an image of the engine folder taken right after each). The next start from any image
// publishes the new version, once, and never the old one. Before, a crash after the new version's
// Enqueue and before the old one's cancel left both queued: the next start showed both in uploads/
// and published both, the old version (which the user had overwritten) as a second a.txt.
func TestRewriteThenCrash(t *testing.T) {
	emu, c := platform(t)
	ce := newCrashImages(t, c)
	dir := ce.dir
	v2 := []byte("version 2")
	s, f := rewrittenQueued(t, ce, string(v2))
	f.Release(true)
	images := ce.during(func() { s.SettleAll(false) })
	mustState(t, f, Queued)
	if len(images) < 2 {
		t.Fatalf("%d engine calls queueing the new version, want at least 2 (queue it, cancel the old one)", len(images))
	}
	ce.stop()

	for i, img := range images {
		published, _ := startFromImage(t, c, img, dir)
		if len(published) != 1 {
			t.Errorf("crash after call %d: %d publications on the next start, want 1 (the new version)", i+1, len(published))
		}
		for _, pf := range published {
			rc, _, err := emu.Plaintext(pf.ID)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || string(got) != string(v2) {
				t.Errorf("crash after call %d: published %q (%v), want the new version %q", i+1, got, err, v2)
			}
		}
	}
}

// startFromImage is the next start after a crash: the engine folder dir replaced by image img (what
// the crash left), a new engine started on it until nothing is pending and no clean-up is left. It
// returns what that engine published, and the staging files it handed back (TakeStaged, before it
// started) for the fs layer to show or queue.
func startFromImage(t *testing.T, c *remote.Client, img, dir string) ([]remote.File, []upload.Staged) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(img, dir); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var published []remote.File
	eng, err := upload.New(upload.Options{Client: c, Dir: dir, RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond,
		OnDone: func(_ upload.Status, f remote.File) {
			mu.Lock()
			published = append(published, f)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	staged := eng.TakeStaged()
	eng.Start(context.Background())
	testutil.Eventually(t, time.Minute, "nothing pending, no clean-up left", func() bool {
		return eng.Pending() == 0 && eng.Cleanups() == 0
	})
	eng.Close()
	mu.Lock()
	defer mu.Unlock()
	return published, staged
}
