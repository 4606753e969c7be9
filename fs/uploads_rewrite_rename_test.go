package fs_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// firstAnswerHeld lets the platform make the first publication (a small upload's or a direct
// upload's registration), then holds its answer until release is closed, or loses it when the
// client leaves first (a crash of the mount). Later publishing requests go through.
type firstAnswerHeld struct {
	calls   atomic.Int32
	stored  atomic.Int32
	release chan struct{}
}

func (a *firstAnswerHeld) wrap(emu *emulator.Emulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !publishing(r) || a.calls.Add(1) > 1 {
			emu.ServeHTTP(w, r)
			return
		}
		rec := publishUnanswered(emu, r, &a.stored)
		select {
		case <-a.release:
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
		case <-r.Context().Done():
		}
	})
}

// TestUploadRewriteRename: a file of uploads/, a.txt, queued and its publishing request made (its
// answer held), is opened again, written again from the start (O_TRUNC) and renamed with mv to b.txt:
// while the rewrite is open, after its close (before the new version is queued), or after the new
// version is queued. The old version's answer comes in before the new version is queued: the old
// version is then published under a name the user has left. Or the mount crashes right after the
// rename (the engine folder as it was then is what the next mount starts from; a rewrite cut off by
// it is opened and closed again, as README says, to publish it as it is). Every way, once all is
// done, the library holds exactly one file, b.txt, with the new content; no multipart upload is left
// in storage; uploads/ is empty. Before, a.txt stayed in the library beside b.txt.
func TestUploadRewriteRename(t *testing.T) {
	for _, c := range []struct {
		name  string
		at    string // "open", "closed", "queued": when mv runs
		crash bool
	}{
		{name: "rename while open", at: "open"},
		{name: "rename after close", at: "closed"},
		{name: "rename after queued", at: "queued"},
		{name: "rename while open, crash", at: "open", crash: true},
		{name: "rename after close, crash", at: "closed", crash: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			held := &firstAnswerHeld{release: make(chan struct{})}
			p := fusetest.NewPlatform(t, fusetest.PlatformOptions{Wrap: held.wrap})
			dir := t.TempDir()
			o := fusetest.Options{Uploads: fusetest.UploadOptions{Enabled: true, Dir: dir, Settle: time.Hour, SmallThreshold: -1}}
			env := fusetest.MountOn(t, p, o, fusetest.MountExtra{})
			up := filepath.Join(env.Dir, "uploads")
			a, b := filepath.Join(up, "a.txt"), filepath.Join(up, "b.txt")
			v1, v2 := testutil.RandomBytes(161, 3000), testutil.RandomBytes(162, 4500)
			// queue queues the file at path once its writer's release is in (the kernel sends it after
			// close returns), as its settle time would.
			queue := func(path string) {
				t.Helper()
				fusetest.Eventually(t, publishDue, filepath.Base(path)+" closed", func() bool {
					return strings.HasPrefix(xattrOf(t, path), "settling")
				})
				env.Mount.SettleUploads()
			}
			writeFile(t, a, v1)
			queue(a)
			fusetest.Eventually(t, publishDue, "a.txt's publication made", func() bool { return held.stored.Load() == 1 })

			mv := func() {
				t.Helper()
				if err := os.Rename(a, b); err != nil {
					t.Fatal(err)
				}
			}
			f, err := os.OpenFile(a, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(v2); err != nil {
				t.Fatal(err)
			}
			image := dir + ".crash"
			crashNow := func() {
				t.Helper()
				if err := testutil.CopyTree(dir, image); err != nil { // the crash: what the mount left on disk
					t.Fatal(err)
				}
			}
			if c.at == "open" {
				mv()
				if c.crash {
					crashNow() // the rewrite still open: cut off
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if c.at == "closed" {
				mv()
				if c.crash {
					crashNow()
				}
			}

			if c.crash {
				// The crashed mount goes; what it does from here on is lost with the folder it does it in,
				// and never reaches the platform (frozen: its requests are held until it has gone).
				p.Emulator().SetFrozen(true)
				stopAtCrash(t, env, dir, image)
				p.Emulator().SetFrozen(false)
				env = fusetest.MountOn(t, p, o, fusetest.MountExtra{})
				up = filepath.Join(env.Dir, "uploads")
				b = filepath.Join(up, "b.txt")
				if c.at == "open" {
					// Cut off mid-write by the crash: shown back, published once opened and closed.
					f, err := os.OpenFile(b, os.O_WRONLY, 0)
					if err != nil {
						t.Fatal(err)
					}
					if err := f.Close(); err != nil {
						t.Fatal(err)
					}
					queue(b)
				} // closed before the crash: queued by the next mount at once
			} else {
				close(held.release)
				fusetest.Eventually(t, publishDue, "the old version's publication confirmed", func() bool {
					return len(env.Published()) >= 1
				})
				if c.at == "queued" {
					// The platform holds the new version's requests until mv is done: mv of a file
					// already published would find it gone from uploads/.
					p.Emulator().SetFrozen(true)
					queue(a)
					mv()
					p.Emulator().SetFrozen(false)
				} else {
					queue(b)
				}
			}

			env.WaitPublished(t, "b.txt", publishDue)
			defer func() {
				if t.Failed() {
					ents, _ := os.ReadDir(up)
					for _, e := range ents {
						t.Logf("left in uploads/: %s: %s", e.Name(), xattrOf(t, filepath.Join(up, e.Name())))
					}
					t.Logf("status: %+v", readStatus(t, env))
				}
			}()
			fusetest.Eventually(t, publishDue, "nothing pending, no clean-up left", func() bool {
				st := readStatus(t, env)
				for _, u := range st.Uploads {
					if u.State != upload.StateDone {
						return false
					}
				}
				return st.Cleanups == 0 && st.Publishing == 0 && len(st.Settling) == 0
			})
			files, err := env.Client.LibraryFiles(fusetest.Context(t), "")
			if err != nil {
				t.Fatal(err)
			}
			var live []string
			for _, lf := range files {
				if lf.IsDeleted {
					continue
				}
				live = append(live, lf.Name)
				if lf.Name == "b.txt" && !bytes.Equal(env.Plaintext(t, lf.ID), v2) {
					t.Errorf("b.txt (%s) does not hold the new version", lf.ID)
				}
			}
			if len(live) != 1 || live[0] != "b.txt" {
				t.Errorf("the library holds %q, want b.txt only", live)
			}
			if mp := p.Emulator().MultipartUploads(); len(mp) != 0 {
				t.Errorf("multipart uploads left in storage: %+v", mp)
			}
			fusetest.Eventually(t, publishDue, "uploads/ empty", func() bool {
				ents, err := os.ReadDir(up)
				return err == nil && len(ents) == 0
			})
		})
	}
}
