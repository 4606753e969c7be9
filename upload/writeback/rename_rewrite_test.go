package writeback

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/remotetest"
	"github.com/rescalefs/rescalefs/upload"
)

// firstAnswerHeld makes the first publishing request (a small upload's or a direct upload's
// registration) on the platform, then holds its answer until release is closed, or loses it when
// the request's context ends first (a cancel stopped the attempt). Later requests wait until later
// is closed before they are sent (so that a rename the test makes after queueing comes first).
type firstAnswerHeld struct {
	*remote.Client
	calls   atomic.Int32
	stored  atomic.Int32
	release chan struct{}
	later   chan struct{}
}

func (a *firstAnswerHeld) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (remote.File, error) {
	first, err := a.enter(ctx)
	if err != nil {
		return remote.File{}, err
	}
	f, err := a.Client.UploadSmall(ctx, name, r, size, typeID)
	return a.hold(ctx, first, f, err)
}

func (a *firstAnswerHeld) RegisterFile(ctx context.Context, reg remote.FileRegistration) (remote.File, error) {
	first, err := a.enter(ctx)
	if err != nil {
		return remote.File{}, err
	}
	f, err := a.Client.RegisterFile(ctx, reg)
	return a.hold(ctx, first, f, err)
}

// enter reports whether this is the first request; a later one waits for later first.
func (a *firstAnswerHeld) enter(ctx context.Context) (bool, error) {
	if a.calls.Add(1) == 1 {
		return true, nil
	}
	select {
	case <-a.later:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

func (a *firstAnswerHeld) hold(ctx context.Context, first bool, f remote.File, err error) (remote.File, error) {
	if !first {
		return f, err
	}
	if err == nil {
		a.stored.Add(1)
	}
	select {
	case <-a.release:
		return f, err
	case <-ctx.Done():
		return remote.File{}, ctx.Err()
	}
}

// library is what the user's library holds (deleted files left out), and the objects of the
// storage that none of it holds (what the user pays for and nothing shows).
func library(t *testing.T, c *remote.Client) (live []remote.File, orphans []string) {
	t.Helper()
	live, orphans, err := remotetest.Library(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return live, orphans
}

// Where, in the life of the rewrite of a queued file, it is renamed.
type renameAt int

const (
	renameOpen   renameAt = iota // while the rewrite is open
	renameClosed                 // after the rewrite's close, before the new version is queued
	renameQueued                 // after the new version is queued
)

func (r renameAt) String() string {
	return [...]string{"rename while open", "rename after close", "rename after queued"}[r]
}

// TestRewriteRenamePublishesNewName: a file queued in uploads/ as a.txt, whose publishing request has
// reached the platform (its answer held), is opened again and rewritten, and renamed to b.txt: while
// the rewrite is open, after its close before the new version is queued, or after. The old version's
// answer comes before the new version is queued (the old version published under the name the file
// had then: a version the user replaced, under a name the user left), or after (the old version
// withdrawn by then). Whatever the order, small or direct upload, once everything is done the library
// holds exactly one file, b.txt, with the new content, and the storage no object of ours (a direct
// upload's) that no file holds.
// Before, the rename of a file whose new version was not queued yet did not reach the old version's
// upload, and the old version's publication, confirmed while the new version was on its way, was
// kept: a.txt stayed in the library beside b.txt.
func TestRewriteRenamePublishesNewName(t *testing.T) {
	for _, direct := range []bool{false, true} {
		for _, at := range []renameAt{renameOpen, renameClosed, renameQueued} {
			for _, answerFirst := range []bool{true, false} {
				name := fmt.Sprintf("direct=%v/%s/old answer before the new version is queued=%v", direct, at, answerFirst)
				t.Run(name, func(t *testing.T) { rewriteRename(t, direct, at, answerFirst) })
			}
		}
	}
}

func rewriteRename(t *testing.T, direct bool, at renameAt, answerFirst bool) {
	emu, c := platform(t)
	held := &firstAnswerHeld{Client: c, release: make(chan struct{}), later: make(chan struct{})}
	var s atomic.Pointer[Set]
	dir := t.TempDir()
	o := upload.Options{Client: held, Dir: dir, RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond,
		OnDone: func(st upload.Status, _ remote.File) { s.Load().Done(st) }}
	if direct {
		o.SmallThreshold = -1
	}
	eng, err := upload.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	s.Store(NewSet(Options{Engine: eng, Settle: time.Hour})) // only SettleAll queues
	set := s.Load()
	f, v1 := queuedFile(t, set, "a.txt")
	eng.Start(context.Background())
	testutil.Eventually(t, time.Minute, "a.txt's publishing request made", func() bool { return held.stored.Load() == 1 })

	v2 := []byte("version 2 of the file, longer than the first")
	rename := func() {
		t.Helper()
		if err := f.Rename("b.txt", "b.txt"); err != nil {
			t.Fatal(err)
		}
	}
	answer := func() {
		t.Helper()
		close(held.release)
		if answerFirst { // the old version's outcome booked before the new version is queued
			testutil.Eventually(t, time.Minute, "the old version's confirmation taken", func() bool { return !set.Tracks(v1) })
		}
	}

	if err := f.Open(true, true); err != nil { // O_TRUNC: written again from the start
		t.Fatal(err)
	}
	if _, err := f.WriteAt(v2, 0); err != nil {
		t.Fatal(err)
	}
	if at == renameOpen {
		rename()
	}
	if err := f.Closed(); err != nil {
		t.Fatal(err)
	}
	f.Release(true)
	if at == renameClosed {
		rename()
	}
	if answerFirst {
		answer()
	}
	set.SettleAll(false)
	if at == renameQueued {
		rename() // before the new version's publishing request is sent
	}
	close(held.later)
	if !answerFirst {
		answer()
	}

	testutil.Eventually(t, time.Minute, "the new version published", func() bool { return f.State() == Published })
	cancelsDone(t, eng)
	// The journal empty too: a published upload owing deletions (the objects of the versions it
	// superseded) is neither pending nor a clean-up yet while its confirmation is being told.
	testutil.Eventually(t, time.Minute, "nothing pending, no clean-up left, the journal empty", func() bool {
		recs, _ := filepath.Glob(filepath.Join(dir, "journal", "*.json"))
		return eng.Pending() == 0 && eng.Cleanups() == 0 && len(recs) == 0
	})

	live, orphans := library(t, c)
	if len(live) != 1 || live[0].Name != "b.txt" {
		var got []string
		for _, l := range live {
			got = append(got, l.Name+" ("+l.ID+")")
		}
		t.Fatalf("the library holds %q, want b.txt only", got)
	}
	rc, _, err := emu.Plaintext(live[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(got) != string(v2) {
		t.Errorf("b.txt holds %q (%v), want the new version %q", got, err, v2)
	}
	// A small upload's object is the platform's (it chose the key; the API deletes files, not
	// objects): only a direct upload's objects are ours to account for.
	if direct && len(orphans) != 0 {
		t.Errorf("objects left in storage that no file holds: %v", orphans)
	}
	if mp := emu.MultipartUploads(); len(mp) != 0 {
		t.Errorf("multipart uploads left in storage: %+v", mp)
	}
}

// TestRecoveredVersionReplacesPending: a queued file written again (renamed meanwhile, or not), and
// the mount crashes while the new version is still open. The next start shows two files: the old
// version, a pending upload, and the new one, cut off, whose staging record says it replaces that
// upload. Opened and closed, the new version is queued in the old one's place, which is withdrawn:
// the old version's file leaves uploads/ with it (Cancelled, and Gone tells the fs layer to take its
// node away). Before, it stayed for good, shown as pending (it counted in Pending as queued), its
// upload gone from the engine.
func TestRecoveredVersionReplacesPending(t *testing.T) {
	for _, rename := range []bool{false, true} {
		t.Run(fmt.Sprintf("renamed=%v", rename), func(t *testing.T) {
			dir := t.TempDir()
			s, eng := newTestSet(t, dir)
			f, v1 := queuedFile(t, s, "a.txt")
			if err := f.Open(true, true); err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("version 2"), 0); err != nil {
				t.Fatal(err)
			}
			name := "a.txt"
			if rename {
				name = "b.txt"
				if err := f.Rename(name, name); err != nil {
					t.Fatal(err)
				}
			}
			eng.Close() // the crash: the rewrite still open

			c, err := remote.New(remote.Options{BaseURL: "http://127.0.0.1:1", APIKey: "unused-0123456789"})
			if err != nil {
				t.Fatal(err)
			}
			eng2, err := upload.New(upload.Options{Client: c, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { eng2.Close() })
			var gone []*File
			s2 := NewSet(Options{Engine: eng2, Settle: time.Hour, Gone: func(g *File) { gone = append(gone, g) }})
			staged := eng2.TakeStaged()
			pending := eng2.Snapshot()
			if len(staged) != 1 || len(pending) != 1 || pending[0].ID != v1 || staged[0].Record.Replaces != v1 {
				t.Fatalf("after the crash: staged %+v, pending %+v; want the new version replacing %s, and %s", staged, pending, v1, v1)
			}
			old, err := s2.NewFile(Spec{Name: "a.txt", Rel: "a.txt", Mode: 0o644, From: Origin{Pending: &pending[0]}})
			if err != nil {
				t.Fatal(err)
			}
			rel := name
			if !rename {
				rel = "a~recovered.txt" // shown beside the pending one, as the fs layer does
			}
			cut, err := s2.NewFile(Spec{Name: rel, Rel: rel, Mode: 0o644, From: Origin{Staged: &staged[0]}})
			if err != nil {
				t.Fatal(err)
			}
			mustState(t, old, Queued)
			mustState(t, cut, CutOff)
			if err := cut.Open(true, false); err != nil {
				t.Fatal(err)
			}
			if err := cut.Closed(); err != nil {
				t.Fatal(err)
			}
			cut.Release(true)
			s2.SettleAll(false)
			mustState(t, cut, Queued)
			mustState(t, old, Cancelled)
			if len(gone) != 1 || gone[0] != old {
				t.Errorf("Gone told of %v, want the old version's file only", gone)
			}
			if _, queued := s2.Pending(); queued != 1 {
				t.Errorf("%d files counted as queued, want 1 (the new version)", queued)
			}
			if snap := eng2.Snapshot(); len(snap) != 1 || snap[0].ID == v1 {
				t.Errorf("engine: %+v, want the new version only", snap)
			}
			f.Release(true) // the crashed mount's handle
		})
	}
}

// TestRewriteRenameThenCrash: a queued file a.txt is written again and renamed to b.txt (while the
// rewrite is open, or after its close), then the new version is queued (SettleAll: queue it, hand
// over, cancel the old one) and the mount crashes after any engine call this makes (an image of the
// engine folder taken right after each). The next start from any image publishes one file: b.txt,
// the new version; never the old version, nor a.txt.
func TestRewriteRenameThenCrash(t *testing.T) {
	for _, at := range []renameAt{renameOpen, renameClosed} {
		t.Run(at.String(), func(t *testing.T) {
			emu, c := platform(t)
			ce := newCrashImages(t, c)
			dir := ce.dir
			v2 := "version 2"
			s, f := rewrittenQueued(t, ce, v2)
			if at == renameOpen {
				if err := f.Rename("b.txt", "b.txt"); err != nil {
					t.Fatal(err)
				}
			}
			f.Release(true)
			if at == renameClosed {
				if err := f.Rename("b.txt", "b.txt"); err != nil {
					t.Fatal(err)
				}
			}
			images := ce.during(func() { s.SettleAll(false) })
			mustState(t, f, Queued)
			if len(images) < 2 {
				t.Fatalf("%d engine calls queueing the new version, want at least 2", len(images))
			}
			ce.stop()
			for i, img := range images {
				published, _ := startFromImage(t, c, img, dir)
				if len(published) != 1 || published[0].Name != "b.txt" {
					t.Errorf("crash after call %d: published %+v on the next start, want b.txt once", i+1, published)
					continue
				}
				rc, _, err := emu.Plaintext(published[0].ID)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(rc)
				rc.Close()
				if err != nil || string(got) != v2 {
					t.Errorf("crash after call %d: published %q (%v), want the new version %q", i+1, got, err, v2)
				}
			}
		})
	}
}
