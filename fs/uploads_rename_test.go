package fs_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// TestUploadRenameWhilePublishing: a file renamed in uploads/ while its publishing request carries
// the old name. The request cannot be called back and the platform has no rename, so the old name is
// published; the file is then published under its new name, and that publication supersedes the one
// under the name the user left: the library (and files/) ends with the new name only. Before, both
// stayed: a name the user had renamed away from before the file left uploads/ stayed in the library.
// (TestUploadRename met this when a retry under an intermediate name was on its way as faults cleared.)
func TestUploadRenameWhilePublishing(t *testing.T) {
	env := uploadEnv(t, fusetest.Options{})
	up := filepath.Join(env.Dir, "uploads")
	data := testutil.RandomBytes(31, 4000)
	env.Emulator.SetFrozen(true)
	writeFile(t, filepath.Join(up, "draft.txt"), data)
	fusetest.Eventually(t, publishDue, "draft.txt's publishing request held by the platform", func() bool {
		return env.Requests(emulator.EndpointUpload) >= 1
	})
	if err := os.Rename(filepath.Join(up, "draft.txt"), filepath.Join(up, "final.txt")); err != nil {
		t.Fatal(err)
	}
	env.Emulator.SetFrozen(false)

	id := env.WaitPublished(t, "final.txt", publishDue)
	checkPlatform(t, env, id, "final.txt", data)
	// The engine republishes under the new name itself (the stale file journaled with the upload): the
	// mount is told of final.txt only.
	pubs := env.Published()
	if len(pubs) != 1 || pubs[0].Name != "final.txt" {
		t.Fatalf("publications %+v, want final.txt only", pubs)
	}
	drafts, err := env.Client.LibraryFiles(fusetest.Context(t), "draft.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range drafts {
		if !f.IsDeleted {
			t.Errorf("the publication under draft.txt stays in the library: %+v", f)
		}
	}
	if n := env.Requests(emulator.EndpointFileDelete); n != 1 {
		t.Errorf("%d file deletions, want 1 (draft.txt's publication)", n)
	}
	if n := env.Requests(emulator.EndpointUpload); n != 2 {
		t.Errorf("%d upload requests, want 2", n)
	}
	fusetest.Eventually(t, 10*time.Second, "final.txt gone from uploads/", gone(filepath.Join(up, "final.txt")))
	ents, err := os.ReadDir(filepath.Join(env.Dir, "files"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Contains(names, "final.txt") || slices.Contains(names, "draft.txt") {
		t.Errorf("files/ lists %q, want final.txt and no draft.txt", names)
	}
	if n := env.Engine.Pending(); n != 0 {
		t.Errorf("%d uploads pending", n)
	}
}
