package writeback

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/remote/remotetest"
	"github.com/rescalefs/rescalefs/upload"
)

// countingRename is the real engine, counting the Renames asked of it.
type countingRename struct {
	*upload.Engine
	renames atomic.Int32
}

func (c *countingRename) Rename(id, name string) error {
	c.renames.Add(1)
	return c.Engine.Rename(id, name)
}

// TestRenameWhilePublishing: a queued file renamed while the engine's publishing request carries its
// old name is renamed in the engine at once, once: the engine records the new name although it
// answers ErrPublishing, so nothing has to ask again later. The request in flight fails; the next
// attempt publishes the new name, and only it.
func TestRenameWhilePublishing(t *testing.T) {
	emu, c := platform(t)
	fc := remotetest.NewFaulty(c)
	// The first publishing request is held, then lost.
	fc.Set("UploadSmall", remotetest.Fault{Stall: true, Err: errors.New("injected: the publish is lost"), Times: 1})
	var s atomic.Pointer[Set]
	published := make(chan upload.Status, 4)
	eng, err := upload.New(upload.Options{Client: fc, Dir: t.TempDir(), RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		OnDone: func(st upload.Status, _ remote.File) {
			s.Load().Done(st)
			published <- st
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	ce := &countingRename{Engine: eng}
	s.Store(NewSet(Options{Engine: ce, Settle: time.Hour}))
	f, id := queuedFile(t, s.Load(), "a.txt")
	eng.Start(context.Background())
	for deadline := time.Now().Add(time.Minute); fc.Stalled() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the publishing request never started")
		}
	}

	if err := f.Rename("b.txt", "b.txt"); err != nil {
		t.Fatal(err)
	}
	if st, ok := eng.Status(id); !ok || st.Name != "b.txt" {
		t.Fatalf("the engine's upload right after the rename: %+v %v, want b.txt", st, ok)
	}
	fc.Release()
	st := <-published
	if st.ID != id || st.Name != "b.txt" {
		t.Errorf("published %+v, want upload %s as b.txt", st, id)
	}
	mustState(t, f, Published)
	if n := ce.renames.Load(); n != 1 {
		t.Errorf("the engine was asked to rename %d times, want once", n)
	}
	if n := fc.Calls("UploadSmall"); n != 2 {
		t.Errorf("%d publishing requests, want 2 (the lost one, then b.txt)", n)
	}
	if n := emu.Counters().Requests[emulator.EndpointUpload]; n != 1 {
		t.Errorf("%d uploads reached the platform, want 1", n)
	}
}

// publishingEngine is the real engine (never started) as it answers while an attempt's publishing
// request is out: Rename records the new name and reports ErrPublishing.
type publishingEngine struct{ countingRename }

func (p *publishingEngine) Rename(id, name string) error {
	if err := p.countingRename.Rename(id, name); err != nil {
		return err
	}
	return upload.ErrPublishing
}

// TestRenameWhilePublishingAsksOnce: however long the publishing request stays out (a fake clock:
// synctest's bubble runs time forward while everything waits), the file never asks the engine to
// rename again: the first answer, ErrPublishing, already carries the rename.
func TestRenameWhilePublishingAsksOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, real := newTestSet(t, t.TempDir())
		pe := &publishingEngine{countingRename{Engine: real}}
		s := NewSet(Options{Engine: pe, Settle: time.Hour})
		f, id := queuedFile(t, s, "a.txt")
		if err := f.Rename("b.txt", "b.txt"); err != nil {
			t.Fatal(err)
		}
		if st, ok := real.Status(id); !ok || st.Name != "b.txt" {
			t.Fatalf("the engine's upload right after the rename: %+v %v, want b.txt", st, ok)
		}
		time.Sleep(10 * time.Minute) // fake time: every poll a loop would make has fired
		synctest.Wait()
		if n := pe.renames.Load(); n != 1 {
			t.Errorf("the engine was asked to rename %d times in 10 minutes of publishing, want once", n)
		}
		mustState(t, f, Queued)
		s.SettleAll(true)
	})
}

// platform serves a fresh emulator over loopback HTTP and returns it with a client of it whose
// retries back off briefly (1 to 20 ms), closed at the test's end.
func platform(t *testing.T) (*emulator.Emulator, *remote.Client) {
	t.Helper()
	emu, err := emulator.New(emulator.Options{APIKey: "test-key-0123456789"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(func() { srv.Close(); emu.Close() })
	c, err := remote.New(remote.Options{BaseURL: srv.URL, APIKey: emu.APIKey(), MinBackoff: time.Millisecond,
		MaxBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c
}
