package fs_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// TestUploadRemoveThenCrash: an rm in uploads/ while the file's publishing request is out (its
// answer held), then a crash of the mount at once: the engine folder as unlink left it (copied the
// moment rm returned) is what the next mount starts from. The removal holds: the file is not shown
// back in uploads/, not published, and the publication its request made (a large file's, holding
// the object rescalefs stored) is deleted. Before, unlink left the upload journaled as pending (the
// cancel journaled it only after waiting for the request, up to seconds): the next mount showed it
// in uploads/ again and published it.
func TestUploadRemoveThenCrash(t *testing.T) {
	lost := &answersLost{}
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{Wrap: lost.wrap})
	dir := t.TempDir()
	o := fusetest.Options{Uploads: fusetest.UploadOptions{Enabled: true, Dir: dir, SmallThreshold: -1}}
	env := fusetest.MountOn(t, p, o, fusetest.MountExtra{})
	path := filepath.Join(env.Dir, "uploads", "gone.bin")
	writeFile(t, path, testutil.RandomBytes(151, testPart+300))
	env.Mount.SettleUploads()
	fusetest.Eventually(t, 60*time.Second, "the registration made", func() bool { return lost.stored.Load() == 1 })

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	image := dir + ".crash"
	if err := testutil.CopyTree(dir, image); err != nil { // the crash: what rm left on disk
		t.Fatal(err)
	}
	stopAtCrash(t, env, dir, image)

	env = fusetest.MountOn(t, p, o, fusetest.MountExtra{})
	fusetest.Eventually(t, 60*time.Second, "nothing pending, no clean-up left", func() bool {
		st := readStatus(t, env)
		for _, u := range st.Uploads {
			if u.State != upload.StateDone {
				return false
			}
		}
		return st.Cleanups == 0 && st.Publishing == 0
	})
	if ents, err := os.ReadDir(filepath.Join(env.Dir, "uploads")); err != nil || len(ents) != 0 {
		t.Errorf("uploads/ after the restart: %v %v", ents, err)
	}
	if pub := env.Published(); len(pub) != 0 {
		t.Errorf("the removed file was published: %+v", pub)
	}
	files, err := env.Client.LibraryFiles(fusetest.Context(t), "gone.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !f.IsDeleted {
			t.Errorf("the removed file's publication stays in the library: %+v", f)
		}
	}
	if n := p.Emulator().Counters().Succeeded(emulator.EndpointFileDelete); n != 1 {
		t.Errorf("%d deletions, want 1", n)
	}
}

// stopAtCrash ends env's mount as a crash at the moment image was taken (testutil.CopyTree of the
// engine folder dir) leaves it: the mount and its engine stop, and image takes dir's place, so what
// they did since is lost with the folder they did it in. The caller mounts on dir again.
func stopAtCrash(t *testing.T, env *fusetest.Env, dir, image string) {
	t.Helper()
	fusetest.Unmount(t, env.Mount, env.Dir)
	env.Mount.SettleUploads()
	env.Engine.Close()
	env.Mount.WaitUploads()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(image, dir); err != nil {
		t.Fatal(err)
	}
}
