package upload

import (
	"errors"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestDroppedObjectDeleted: a direct upload's registration reaches the platform; meanwhile another
// tool publishes the same bytes under the same name. When the upload is renamed while its
// registration is out, the publication under the name it left is stale: the upload sends a new
// object for its new name (the stale file's deletion must not take the new publication's data with
// it), publishes it, and deletes the stale file. The object the stale file held is ours (its key
// is random, chosen by rescalefs) and, once that file is deleted, no library file holds it: it is
// deleted from the storage too, whether the registration's answer was lost (a crash: the next
// start's look for it, lookEarlier) or came in after the rename (republish). Before, the engine
// forgot the old object when it sent the new one, and it stayed in the user's storage for good.
// Without a rename the lost publication is the upload's (its object is ours) and nothing is sent
// again. The other tool's file is never touched.
func TestDroppedObjectDeleted(t *testing.T) {
	for _, c := range []struct {
		name      string
		rename    bool
		lost      bool // the registration's answer is lost to a crash, else let through after the rename
		completes int64
		deletes   int64 // objects deleted from the storage
	}{
		{name: "lost, same name", rename: false, lost: true, completes: 1, deletes: 0},
		{name: "lost, renamed", rename: true, lost: true, completes: 2, deletes: 1},
		{name: "answered, renamed", rename: true, lost: false, completes: 2, deletes: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			held := &answerHeld{Client: p.c}
			if !c.lost {
				held.release = make(chan struct{})
			}
			o := p.engineOpts(dir)
			o.Client, o.SmallThreshold = held, -1
			h := startEngine(t, o)
			data := randomData(170, testPart+100)
			id := enqueue(t, h.eng, "draft.bin", data)
			waitFor(t, func() bool { return held.stored.Load() == 1 })
			ours := held.fileID.Load().(string)
			theirs := p.uploadStale("draft.bin", data) // another tool, in the same window
			want := "draft.bin"
			if c.rename {
				want = "final.bin"
				if err := h.eng.Rename(id, want); !errors.Is(err, ErrPublishing) {
					t.Fatalf("rename while publishing: %v, want ErrPublishing", err)
				}
			}
			if c.lost {
				h.eng.Close() // the crash: the answer is lost
				o = p.engineOpts(dir)
				o.SmallThreshold = -1
				h = startEngine(t, o)
			} else {
				close(held.release)
			}
			f := h.wait(id)
			p.checkPublished(f, want, data)
			waitFor(t, func() bool { return h.eng.Cleanups() == 0 })

			if got := p.orphans(); len(got) != 0 {
				t.Errorf("objects left in storage that no file holds: %v", got)
			}
			if p.deleted(theirs.ID) {
				t.Error("the other tool's file was deleted")
			}
			if got := p.deleted(ours); got != c.rename {
				t.Errorf("the publication under %s deleted: %v, want %v", "draft.bin", got, c.rename)
			}
			if !c.rename && f.ID != ours {
				t.Errorf("published as %s, want the lost publication %s", f.ID, ours)
			}
			cn := p.e.Counters()
			if n := cn.Succeeded(emulator.EndpointS3Complete); n != c.completes {
				t.Errorf("%d objects completed, want %d", n, c.completes)
			}
			if n := cn.Succeeded(emulator.EndpointS3Delete); n != c.deletes {
				t.Errorf("%d objects deleted, want %d", n, c.deletes)
			}
			journalEmpty(t, dir)
		})
	}
}

// deleteFails carries S3 requests and fails every DeleteObject without sending it.
type deleteFails struct {
	tried atomic.Int32
}

func (d *deleteFails) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodDelete && !r.URL.Query().Has("uploadId") {
		d.tried.Add(1)
		return nil, errors.New("injected: the storage is unreachable")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestDroppedObjectSurvivesCrash: the object a renamed upload stopped using (a stale publication
// held it) cannot be deleted yet (the storage is unreachable) when the upload is published and the
// stale file deleted; then the mount crashes. The record stays journaled as a clean-up record, and
// the next start deletes the object.
func TestDroppedObjectSurvivesCrash(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	held := &answerHeld{Client: p.c, release: make(chan struct{})}
	fails := &deleteFails{}
	o := p.engineOpts(dir)
	o.Client, o.SmallThreshold, o.S3.HTTPClient = held, -1, &http.Client{Transport: fails}
	h := startEngine(t, o)
	data := randomData(171, testPart+100)
	id := enqueue(t, h.eng, "draft.bin", data)
	waitFor(t, func() bool { return held.stored.Load() == 1 })
	stale := held.fileID.Load().(string)
	if err := h.eng.Rename(id, "final.bin"); !errors.Is(err, ErrPublishing) {
		t.Fatalf("rename while publishing: %v, want ErrPublishing", err)
	}
	close(held.release)
	p.checkPublished(h.wait(id), "final.bin", data)
	waitFor(t, func() bool { return p.deleted(stale) && fails.tried.Load() > 0 })
	if n := h.eng.Cleanups(); n != 1 {
		t.Fatalf("%d clean-ups, want 1 (the object the upload stopped using)", n)
	}
	h.eng.Close() // the crash
	if got := p.orphans(); len(got) != 1 {
		t.Fatalf("objects held by no file before the next start: %v, want the dropped one", got)
	}

	o = p.engineOpts(dir)
	o.SmallThreshold = -1
	h = startEngine(t, o)
	waitFor(t, func() bool { return h.eng.Cleanups() == 0 })
	if got := p.orphans(); len(got) != 0 {
		t.Errorf("objects left in storage that no file holds: %v", got)
	}
	if n := p.e.Counters().Succeeded(emulator.EndpointS3Delete); n != 1 {
		t.Errorf("%d objects deleted, want 1", n)
	}
	journalEmpty(t, dir)
}

// TestDroppedMovesWithStaleFiles: the objects an upload stopped using (Dropped) are held by its
// stale publications (Supersedes), and go with them to a new version of the file: by Handover, and
// by the next start's withdrawal of an old version whose new one was queued before a crash. Left
// with the old version, its withdrawal would delete them while the stale files that hold them wait
// for the new version's publication.
func TestDroppedMovesWithStaleFiles(t *testing.T) {
	for _, crash := range []bool{false, true} {
		name := "handover"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			p := newPlatform(t, false)
			dir := t.TempDir()
			eng, err := New(p.engineOpts(dir)) // not started: both versions stay queued
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { eng.Close() })
			old := enqueue(t, eng, "a.bin", randomData(172, 100))
			obj := storedObject{Bucket: emulator.StorageBucket, Key: "user/a.bin-old"}
			if err := eng.editRecord(old, false, func(u *upload) {
				u.rec.Supersedes, u.rec.Dropped = []string{"stale1"}, []storedObject{obj}
			}); err != nil {
				t.Fatal(err)
			}
			f, err := eng.CreateStaging()
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			nu, err := eng.EnqueueVersion(f.Name(), "a.bin", 0, "", old)
			if err != nil {
				t.Fatal(err)
			}
			if crash {
				eng.Close() // before the handover and the old version's cancel
				if eng, err = New(p.engineOpts(dir)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { eng.Close() })
			} else if err := eng.Handover(old, nu); err != nil {
				t.Fatal(err)
			}
			rec := func(id string) (record, bool) {
				eng.mu.Lock()
				defer eng.mu.Unlock()
				u, ok := eng.ups[id]
				if !ok {
					u, ok = eng.gone[id]
				}
				if !ok {
					return record{}, false
				}
				return u.rec, true
			}
			if r, ok := rec(nu); !ok || !slices.Equal(r.Dropped, []storedObject{obj}) || !slices.Equal(r.Supersedes, []string{"stale1"}) {
				t.Errorf("new version: supersedes %v, dropped %v; want the old one's", r.Supersedes, r.Dropped)
			}
			if r, ok := rec(old); ok && (len(r.Dropped) > 0 || len(r.Supersedes) > 0) {
				t.Errorf("old version keeps supersedes %v, dropped %v", r.Supersedes, r.Dropped)
			}
		})
	}
}
