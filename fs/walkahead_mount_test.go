package fs_test

import (
	"cmp"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// walkJob is a job of small files (each under the tests' 64 KiB block) in a few folders.
func walkJob(id string, folders, perFolder int) emulator.JobSpec {
	var files []emulator.FileSpec
	for d := range folders {
		for i := range perFolder {
			files = append(files, emulator.FileSpec{RelativePath: fmt.Sprintf("sweep/design_%d/probe_%03d.dat", d, i),
				Size: int64(100 + (d*perFolder+i)*997%20000), Seed: int64(d*1000 + i + 1)})
		}
	}
	return emulator.JobSpec{ID: id, Name: "walk " + id, Files: files}
}

// checkCopy compares every file of job jobID with its copy under dest/<relativePath>.
func checkCopy(t *testing.T, env *fusetest.Env, jobID, dest string) {
	t.Helper()
	n := 0
	for _, j := range env.Jobs {
		if j.ID != jobID {
			continue
		}
		for _, f := range j.Files {
			b, err := os.ReadFile(filepath.Join(dest, f.RelativePath))
			if err != nil {
				t.Errorf("copy of %s: %v", f.RelativePath, err)
				continue
			}
			sum := sha512.Sum512(b)
			if hex.EncodeToString(sum[:]) != f.SHA512 {
				t.Errorf("copy of %s differs from the stored file", f.RelativePath)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no files of job %s checked", jobID)
	}
}

// settledCounters waits until the emulator has counted at least want requests to endpoints (it
// counts a request once its handler has returned, which may be just after the client has the answer),
// and returns its counters.
func settledCounters(t *testing.T, e *emulator.Emulator, want int64, endpoints ...string) emulator.Counters {
	t.Helper()
	var c emulator.Counters
	fusetest.Eventually(t, 10*time.Second, "the emulator's counters", func() bool {
		c = e.Counters()
		var n int64
		for _, ep := range endpoints {
			n += c.Requests[ep]
		}
		return n >= want
	})
	return c
}

// TestFolderWalkFetchesAhead: cp -r, tar and rsync of a job of small files fetch each file once, in
// one request, and ahead of its open: the program's reads find the file fetched or being fetched,
// except the first two a walk needs to be recognised (see maxMisses). Nothing goes through /contents/.
func TestFolderWalkFetchesAhead(t *testing.T) {
	const folders, perFolder = 5, 30
	copies := []struct {
		name string
		copy func(t *testing.T, src, dest string)
		// maxMisses: files fetched only once opened. cp and tar list each folder just before opening
		// its files, so after the first folder's first two files every file is fetched ahead (one
		// more is allowed for a stall under load); rsync lists folders long before, so each folder's
		// first two may be fetched on open. process_output.log, alone in its folder, is one more.
		maxMisses int64
	}{
		{"cp -r", func(t *testing.T, src, dest string) { run(t, "cp", "-r", src, dest) }, 2 + 1 + 1},
		{"tar c", func(t *testing.T, src, dest string) {
			if err := os.Mkdir(dest, 0o755); err != nil {
				t.Fatal(err)
			}
			run(t, "bash", "-c", fmt.Sprintf("set -o pipefail; tar -C %q -cf - . | tar -C %q -xf -", src, dest))
		}, 2 + 1 + 1},
		{"rsync -a", func(t *testing.T, src, dest string) { run(t, "rsync", "-a", src+"/", dest+"/") }, 2*folders + 1},
	}
	for _, tc := range copies {
		t.Run(tc.name, func(t *testing.T) {
			env := fusetest.Mount(t, fusetest.Options{Direct: true, Jobs: []emulator.JobSpec{walkJob("Walk", folders, perFolder)}})
			src := filepath.Join(env.Dir, "jobs", "Walk")
			if _, err := os.ReadDir(src); err != nil { // the listing, before the counters
				t.Fatal(err)
			}
			env.Emulator.ResetCounters()
			dest := filepath.Join(t.TempDir(), "copy")
			tc.copy(t, src, dest)
			checkCopy(t, env, "Walk", dest)

			files := int64(len(env.Jobs[0].Files)) // the folders' files and the job's process_output.log
			c := settledCounters(t, env.Emulator, files, emulator.EndpointS3Get, emulator.EndpointContents)
			if n := c.Requests[emulator.EndpointS3Get]; n != files {
				t.Errorf("%d storage GETs for %d files, want one each", n, files)
			}
			if n := c.Requests[emulator.EndpointContents] + c.Requests[emulator.EndpointFile]; n != 0 {
				t.Errorf("%d /contents/ or file requests, want none", n)
			}
			st := env.Cache.Stats()
			t.Logf("cache: %d misses, %d read-ahead hits, %d joined in flight, %d memory hits",
				st.Misses, st.ReadaheadHits, st.WaitHits, st.MemoryHits)
			if st.Misses > tc.maxMisses {
				t.Errorf("%d files fetched only once opened, want at most %d of %d", st.Misses, tc.maxMisses, files)
			}
			if st.Requests != files {
				t.Errorf("the cache made %d requests for %d files", st.Requests, files)
			}
		})
	}
}

// TestRandomOpenFetchesOnlyItsFile: a program reading one file of a large folder (or a few, in no
// order) makes the mount fetch those files only.
func TestRandomOpenFetchesOnlyItsFile(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Direct: true, Jobs: []emulator.JobSpec{walkJob("Rand", 1, 100)}})
	dir := filepath.Join(env.Dir, "jobs", "Rand", "sweep", "design_0")
	if _, err := os.ReadDir(dir); err != nil {
		t.Fatal(err)
	}
	// Three files no two of which, opened in a row, are neighbours in the listing or in inode order
	// (inode numbers come from the files' ids: a fixed choice of names was such a pair now and then).
	names := nonNeighbours(t, dir, []string{"probe_057.dat", "probe_012.dat", "probe_090.dat", "probe_033.dat",
		"probe_071.dat", "probe_004.dat", "probe_046.dat", "probe_085.dat"}, 3)
	env.Emulator.ResetCounters()
	for i, name := range names {
		if _, err := os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
		c := settledCounters(t, env.Emulator, int64(i+1), emulator.EndpointS3Get)
		if n := c.Requests[emulator.EndpointS3Get] + c.Requests[emulator.EndpointContents]; n != int64(i+1) {
			t.Fatalf("after reading %d files: %d requests for their contents", i+1, n)
		}
		if st := env.Cache.Stats(); st.Requests != int64(i+1) {
			t.Fatalf("after reading %d files: the cache made %d requests", i+1, st.Requests)
		}
	}
}

// TestStorageFailureMidWalkFallsBack: storage fails for a while in the middle of a cp -r; the files
// whose storage read failed are read through /contents/, one request each, the others still from
// storage, and the copy is byte-identical.
func TestStorageFailureMidWalkFallsBack(t *testing.T) {
	const folders, perFolder = 2, 40
	var gets, failed atomic.Int64
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{Wrap: func(e *emulator.Emulator) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			storageGet := r.Method == http.MethodGet && !strings.HasPrefix(r.URL.Path, "/api/") &&
				!strings.HasPrefix(r.URL.Path, "/_emulator")
			// Storage answers 500 to its 20th to 39th object GET: some ten files' worth at two attempts each.
			if n := gets.Add(map[bool]int64{true: 1}[storageGet]); storageGet && n >= 20 && n < 40 {
				failed.Add(1)
				w.Header().Set("Content-Type", "application/xml")
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`)
				return
			}
			e.ServeHTTP(w, r)
		})
	}})
	env := fusetest.MountOn(t, p, fusetest.Options{Direct: true, Jobs: []emulator.JobSpec{walkJob("Fail", folders, perFolder)}},
		fusetest.MountExtra{})
	src := filepath.Join(env.Dir, "jobs", "Fail")
	if _, err := os.ReadDir(src); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "copy")
	run(t, "cp", "-r", src, dest)
	checkCopy(t, env, "Fail", dest)

	files := int64(len(env.Jobs[0].Files))
	c := settledCounters(t, env.Emulator, files, emulator.EndpointS3Get, emulator.EndpointContents)
	contents, direct := c.Requests[emulator.EndpointContents], c.Requests[emulator.EndpointS3Get]
	t.Logf("%d storage GETs answered 500; %d files from storage, %d through /contents/", failed.Load(), direct, contents)
	if failed.Load() != 20 {
		t.Fatalf("%d storage GETs failed, want 20: the walk did not reach the failure", failed.Load())
	}
	// Every file comes once from one place or the other: a failed file is read through /contents/
	// once, not retried against storage, and the others do not leave storage.
	if contents+direct != files {
		t.Errorf("%d files from storage + %d through /contents/, want %d in all", direct, contents, files)
	}
	if contents == 0 || contents > failed.Load() {
		t.Errorf("%d files read through /contents/ for %d failed storage GETs", contents, failed.Load())
	}
}

// TestNoStorageCredentialsReadsThroughAPI: a platform that gives no storage credentials (403) is read
// through /contents/, one request per file, after one credentials request, not one per file; the copy
// is byte-identical and the walk still fetches ahead.
func TestNoStorageCredentialsReadsThroughAPI(t *testing.T) {
	var asked atomic.Int64
	p := fusetest.NewPlatform(t, fusetest.PlatformOptions{Wrap: func(e *emulator.Emulator) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/v3/credentials") {
				asked.Add(1)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprint(w, `{"detail": "You do not have permission to perform this action."}`)
				return
			}
			e.ServeHTTP(w, r)
		})
	}})
	env := fusetest.MountOn(t, p, fusetest.Options{Direct: true, Jobs: []emulator.JobSpec{walkJob("NoCred", 2, 30)}},
		fusetest.MountExtra{})
	src := filepath.Join(env.Dir, "jobs", "NoCred")
	if _, err := os.ReadDir(src); err != nil {
		t.Fatal(err)
	}
	env.Emulator.ResetCounters()
	dest := filepath.Join(t.TempDir(), "copy")
	run(t, "cp", "-r", src, dest)
	checkCopy(t, env, "NoCred", dest)
	files := int64(len(env.Jobs[0].Files))
	c := settledCounters(t, env.Emulator, files, emulator.EndpointContents)
	if n := c.Requests[emulator.EndpointContents]; n != files {
		t.Errorf("%d /contents/ requests for %d files, want one each", n, files)
	}
	if n := c.Requests[emulator.EndpointS3Get]; n != 0 {
		t.Errorf("%d storage GETs without credentials", n)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("credentials asked %d times, want once (then not again for a while)", n)
	}
	if st := env.Cache.Stats(); st.Misses > 5 {
		t.Errorf("%d files fetched only once opened: the walk did not fetch ahead", st.Misses)
	}
}

// nonNeighbours picks n of candidates, in order, such that each is no neighbour of the one picked before
// it in dir's listing (by name) or in inode order: the opens of a walk the mount would recognise.
func nonNeighbours(t *testing.T, dir string, candidates []string, n int) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type file struct {
		name string
		ino  uint64
	}
	var files []file
	for _, e := range ents {
		fi, err := os.Lstat(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, file{e.Name(), fi.Sys().(*syscall.Stat_t).Ino})
	}
	pos := func(sorted []file) map[string]int {
		m := map[string]int{}
		for i, f := range sorted {
			m[f.name] = i
		}
		return m
	}
	byName := pos(files)
	byIno := slices.Clone(files)
	slices.SortStableFunc(byIno, func(a, b file) int { return cmp.Compare(a.ino, b.ino) })
	inoPos := pos(byIno)
	near := func(a, b int) bool { return a-b == 1 || b-a == 1 }
	var picked []string
	for _, c := range candidates {
		if len(picked) == n {
			break
		}
		if k := len(picked); k > 0 {
			p := picked[k-1]
			if near(byName[p], byName[c]) || near(inoPos[p], inoPos[c]) {
				continue
			}
		}
		picked = append(picked, c)
	}
	if len(picked) < n {
		t.Fatalf("no %d of %v apart in both orders", n, candidates)
	}
	return picked
}
