package download

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

func TestJobCompletingWhileRunningIsDownloaded(t *testing.T) {
	e := newEnv(t)
	j := e.addJob(t, emulator.JobSpec{Name: "running", RunFor: time.Hour, Files: []emulator.FileSpec{
		{RelativePath: "case/big.dat", Size: 5*testBlock + 123},
		textFile("case/system/controlDict", []byte("application simpleFoam;\n")),
		{RelativePath: "empty.txt", Size: 0},
	}})
	d := e.start(t, Options{})

	// A running job is not downloaded: several rounds go by without its folder appearing.
	e.waitPolls(t, 3)
	if _, err := os.Stat(filepath.Join(e.dir, j.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("running job's folder: %v, want it absent", err)
	}
	if n := e.emu.Counters().Requests[emulator.EndpointJobFiles]; n != 0 {
		t.Fatalf("running job's files listed %d times", n)
	}
	if err := e.emu.CompleteJob(j.ID); err != nil {
		t.Fatal(err)
	}
	js := waitDone(t, d, j.ID)
	e.checkJob(t, j, "")
	if !js.Succeeded || js.FilesDone != len(j.Files) || js.FilesTotal != len(j.Files) || js.BytesDone != js.BytesTotal {
		t.Errorf("status = %+v", js)
	}
	// Final files get the umask's mode, not the partial's 0600.
	fi, err := os.Stat(filepath.Join(e.dir, j.ID, "case", "big.dat"))
	if err != nil {
		t.Fatal(err)
	}
	if want := os.FileMode(0o666) &^ umask(t); fi.Mode().Perm() != want {
		t.Errorf("mode %v, want %v", fi.Mode().Perm(), want)
	}
}

// umask finds the process's umask by creating a file, as the Downloader does: setting the umask to read
// it would change it process-wide.
func umask(t *testing.T) os.FileMode {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, "probe"), os.O_CREATE|os.O_WRONLY, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	return 0o666 &^ fi.Mode().Perm()
}

func TestStartDownloadsJobsWithinMaxJobAge(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	old := e.addJob(t, emulator.JobSpec{Name: "old", Created: now.Add(-40 * 24 * time.Hour),
		Files: []emulator.FileSpec{{RelativePath: "old.dat", Size: 1000}}})
	recent := e.addJob(t, emulator.JobSpec{Name: "recent", Created: now.Add(-2 * 24 * time.Hour),
		Files: []emulator.FileSpec{{RelativePath: "r.dat", Size: 3 * testBlock}}})
	failed := e.addJob(t, emulator.JobSpec{Name: "failed", Created: now.Add(-time.Hour), Fail: true,
		Files: []emulator.FileSpec{{RelativePath: "partial-results.csv", Size: 500}}})
	d := e.start(t, Options{MaxJobAge: 7 * 24 * time.Hour})

	waitDone(t, d, recent.ID)
	js := waitDone(t, d, failed.ID)
	e.checkJob(t, recent, "")
	e.checkJob(t, failed, "") // failed jobs too: their logs are what users want
	if js.Succeeded {
		t.Errorf("failed job reported as succeeded: %+v", js)
	}
	e.waitPolls(t, 2)
	if _, err := os.Stat(filepath.Join(e.dir, old.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("job older than MaxJobAge: %v, want no folder", err)
	}
	if _, ok := jobStatus(d, old.ID); ok {
		t.Errorf("job older than MaxJobAge listed in the status")
	}
}

func TestQueryFiltersByName(t *testing.T) {
	e := newEnv(t)
	j := e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{
		textFile("result.csv", content(100, 1)),
		textFile("post/result_2.csv", content(200, 2)),
		textFile("result/mesh.vtk", content(300, 3)), // a folder's name does not count
		textFile("RESULT.txt", content(400, 4)),      // case-sensitive
		textFile("log.txt", content(500, 5)),
	}})
	d := e.start(t, Options{Query: "result"})
	js := waitDone(t, d, j.ID)
	e.checkJob(t, j, "result")
	if js.FilesTotal != 2 {
		t.Errorf("files total %d, want 2", js.FilesTotal)
	}
}

func TestSecondStartDownloadsNothing(t *testing.T) {
	for _, c := range []struct {
		name         string
		removeRecord bool // no record: the files are hashed and found complete
		touch        bool // an mtime changed: that file is hashed again, still not fetched
	}{
		{name: "with record"},
		{name: "without record", removeRecord: true},
		{name: "mtime changed", touch: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			jobs := []emulator.Job{
				e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "a/x.dat", Size: 2*testBlock + 5}}}),
				e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "y.dat", Size: 77}}}),
			}
			d := e.start(t, Options{})
			for _, j := range jobs {
				waitDone(t, d, j.ID)
			}
			// The totals (--metrics) count what was fetched; the second start fetches nothing.
			want := Totals{JobsDone: 2}
			for _, j := range jobs {
				for _, f := range j.Files {
					want.Files, want.Bytes = want.Files+1, want.Bytes+f.Size
				}
			}
			if got := d.Totals(); got != want {
				t.Errorf("first start's totals %+v, want %+v", got, want)
			}
			d.Close()
			if c.removeRecord {
				if err := os.Remove(filepath.Join(e.dir, jobs[0].ID, stateName)); err != nil {
					t.Fatal(err) // else the case would silently test "with record"
				}
			}
			if c.touch {
				p := filepath.Join(e.dir, jobs[0].ID, "a", "x.dat")
				later := time.Now().Add(time.Hour)
				if err := os.Chtimes(p, later, later); err != nil {
					t.Fatal(err)
				}
			}
			e.emu.ResetCounters()
			d2 := e.start(t, Options{})
			for _, j := range jobs {
				waitDone(t, d2, j.ID)
				e.checkJob(t, j, "")
			}
			cn := e.emu.Counters()
			if n := cn.Requests[emulator.EndpointContents]; n != 0 {
				t.Errorf("second start made %d contents requests, want 0", n)
			}
			if got, want := d2.Totals(), (Totals{JobsDone: 2}); got != want {
				t.Errorf("second start's totals %+v, want %+v: files found complete are not downloads", got, want)
			}
			if !c.removeRecord && !c.touch {
				// A job complete on disk is neither listed nor asked for its statuses again.
				if n := cn.Requests[emulator.EndpointJobFiles] + cn.Requests[emulator.EndpointStatuses]; n != 0 {
					t.Errorf("second start made %d listing or status requests, want 0", n)
				}
			}
		})
	}
}

func TestPartialFileIsResumed(t *testing.T) {
	const size = 16 * testBlock
	for _, c := range []struct {
		name      string
		garbage   bool  // the kept half is wrong: started again from 0, once
		wantBytes int64 // bytes of contents fetched
	}{
		{name: "good half", wantBytes: size / 2},
		{name: "wrong half", garbage: true, wantBytes: size/2 + size},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			j := e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "out/field.dat", Size: size}}})
			f := j.Files[0]
			// A crash left the first half in the partial file.
			rc, _, err := e.emu.Plaintext(f.ID)
			if err != nil {
				t.Fatal(err)
			}
			half := make([]byte, size/2)
			_, err = io.ReadFull(rc, half)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if c.garbage {
				half[12345] ^= 0xff
			}
			dir := filepath.Join(e.dir, j.ID, "out")
			os.MkdirAll(dir, 0o755)
			if err := os.WriteFile(filepath.Join(dir, "field.dat"+partialSuffix), half, 0o600); err != nil {
				t.Fatal(err)
			}
			d := e.start(t, Options{})
			waitDone(t, d, j.ID)
			e.checkJob(t, j, "")
			want := c.wantBytes + j.Files[1].Size // and process_output.log, whole
			if got := e.emu.Counters().BytesOut[emulator.EndpointContents]; got != want {
				t.Errorf("fetched %d bytes of contents, want %d", got, want)
			}
		})
	}
}

func TestFaultsStillEndByteIdentical(t *testing.T) {
	e := newEnv(t)
	var jobs []emulator.Job
	for i := range 3 {
		jobs = append(jobs, e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{
			{RelativePath: "a.dat", Size: int64(6*testBlock + i)},
			{RelativePath: "sub/b.dat", Size: int64(2*testBlock + 17*i)},
			textFile("c.txt", content(1000, byte(i))),
		}}))
	}
	e.emu.SetFaults(emulator.Faults{ErrorRate: 0.1, CutRate: 0.1, ShortRate: 0.1, Seed: 7,
		Endpoints: []string{emulator.EndpointContents, emulator.EndpointJobFiles, emulator.EndpointStatuses, emulator.EndpointJobs}})
	d := e.start(t, Options{Parallel: 3})
	for _, j := range jobs {
		waitDone(t, d, j.ID)
		e.checkJob(t, j, "")
	}
	if f := e.emu.Counters().Faults; f["cut"]+f["short"]+f["500"]+f["503"]+f["504"] == 0 {
		t.Errorf("no fault was injected: %v", f)
	}
}

func TestFailureIsReportedRetriedAndNeverFinal(t *testing.T) {
	e := newEnv(t)
	j := e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "x.dat", Size: 3 * testBlock}}})
	e.failContents.Store(true)
	d := e.start(t, Options{})
	var js JobStatus
	waitFor(t, "a failed attempt", func() bool {
		var ok bool
		js, ok = jobStatus(d, j.ID)
		return ok && js.State == "failed" && len(js.Errors) > 0
	})
	if !strings.Contains(js.Errors[0], "500") || js.NextTry.IsZero() {
		t.Errorf("failed status = %+v", js)
	}
	if n := d.Totals().Failures; n < int64(js.Attempts) || n < 1 {
		t.Errorf("totals count %d failed attempts; the status says %d", n, js.Attempts)
	}
	if _, err := os.Stat(filepath.Join(e.dir, j.ID, "x.dat")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("final file after a failure: %v, want none", err)
	}
	e.failContents.Store(false)
	js = waitDone(t, d, j.ID)
	e.checkJob(t, j, "")
	if len(js.Errors) != 0 {
		t.Errorf("errors still reported after success: %v", js.Errors)
	}
	// The failures stay counted after the success (a counter), the job is no longer failed.
	var size int64
	for _, f := range j.Files {
		size += f.Size
	}
	if tot := d.Totals(); tot.Failures < 1 || tot.JobsDone != 1 || tot.Failed != 0 || tot.Files != int64(len(j.Files)) || tot.Bytes != size {
		t.Errorf("totals after the success: %+v; want at least 1 failure, 1 job, %d files, %d bytes", tot, len(j.Files), size)
	}
}

func TestUnauthorizedIsReportedThenRecovers(t *testing.T) {
	e := newEnv(t)
	j := e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "x.dat", Size: 100}}})
	e.emu.SetKeyRevoked(true)
	d := e.start(t, Options{})
	waitFor(t, "the listing error", func() bool { return strings.Contains(d.Snapshot().Error, "401") })
	e.emu.SetKeyRevoked(false)
	waitDone(t, d, j.ID)
	e.checkJob(t, j, "")
	if s := d.Snapshot(); s.Error != "" || s.LastPoll.IsZero() {
		t.Errorf("status after recovery: error %q, last poll %v", s.Error, s.LastPoll)
	}
}

func TestDiskFullStopsTheJobAndKeepsPartials(t *testing.T) {
	e := newEnv(t)
	j := e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{
		{RelativePath: "a.dat", Size: 8 * testBlock},
		{RelativePath: "b.dat", Size: 8 * testBlock},
	}})
	var full atomic.Bool
	full.Store(true)
	d := e.start(t, Options{Parallel: 1}, func(d *Downloader) {
		d.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
			// a.dat fits; b.dat fills the disk halfway through its first write.
			if full.Load() && strings.Contains(f.Name(), "b.dat") {
				n, _ := f.WriteAt(p[:len(p)/2], off)
				return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
			}
			return f.WriteAt(p, off)
		}
	})
	var js JobStatus
	waitFor(t, "the disk-full error", func() bool {
		var ok bool
		js, ok = jobStatus(d, j.ID)
		return ok && js.State == "failed"
	})
	if len(js.Errors) == 0 || !strings.Contains(js.Errors[0], ErrDiskFull.Error()) {
		t.Errorf("errors = %q, want %q", js.Errors, ErrDiskFull)
	}
	// a.dat is done, b.dat's partial is kept with what was written, and the job stopped there:
	// process_output.log (after b.dat, one file at a time) was not started.
	dir := filepath.Join(e.dir, j.ID)
	if fi, err := os.Stat(filepath.Join(dir, "b.dat"+partialSuffix)); err != nil || fi.Size() == 0 {
		t.Errorf("b.dat's partial: %v, %v; want kept, not empty", fi, err)
	}
	for _, name := range []string{"b.dat", "process_output.log", "process_output.log" + partialSuffix} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after disk full: %v, want none", name, err)
		}
	}
	e.checkFile(t, j.ID, "a.dat", j.Files[0])
	full.Store(false)
	waitDone(t, d, j.ID)
	e.checkJob(t, j, "")
}

func TestHostilePathsNeverEscape(t *testing.T) {
	e := newEnv(t)
	outside := filepath.Join(filepath.Dir(e.dir), "escaped")
	e.rewrite = map[string]string{
		"abs-marker":  outside,
		"nul-marker":  "nul\x00name",
		"long-marker": "d/" + strings.Repeat("L", 300),
		"part-marker": "x" + partialSuffix,
	}
	j := e.addJob(t, emulator.JobSpec{Files: []emulator.FileSpec{
		{RelativePath: "../escaped", Size: 10},
		{RelativePath: "ok/../../../escaped", Size: 10},
		{RelativePath: "abs-marker", Size: 10},
		{RelativePath: "nul-marker", Size: 10},
		{RelativePath: "long-marker", Size: 10},
		{RelativePath: "part-marker", Size: 10},
		{RelativePath: "ok/good.txt", Size: 10},
	}})
	d := e.start(t, Options{})
	js := waitDone(t, d, j.ID)
	if js.FilesSkipped != 6 || js.FilesTotal != 2 { // good.txt and process_output.log
		t.Errorf("status = %+v, want 6 skipped and 2 files", js)
	}
	// Nothing but the download folder next to it, and only the safe files in the job's folder.
	entries, _ := os.ReadDir(filepath.Dir(e.dir))
	if len(entries) != 1 {
		t.Errorf("files next to the download folder: %v", entries)
	}
	var got []string
	filepath.WalkDir(e.dir, func(p string, de os.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			rel, _ := filepath.Rel(e.dir, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	want := map[string]bool{j.ID + "/ok/good.txt": true, j.ID + "/process_output.log": true, j.ID + "/" + stateName: true}
	if len(got) != len(want) {
		t.Errorf("files in the download folder: %q", got)
	}
	for _, g := range got {
		if !want[g] {
			t.Errorf("unexpected file %q", g)
		}
	}
}

func TestNotifyChecksAJobAtOnce(t *testing.T) {
	e := newEnv(t)
	j := e.addJob(t, emulator.JobSpec{RunFor: time.Hour, Files: []emulator.FileSpec{{RelativePath: "n.dat", Size: 99}}})
	// A poll so long that only Notify can make the job be seen completed within the test.
	d := e.start(t, Options{Poll: time.Hour})
	waitFor(t, "the first listing", func() bool { return !d.Snapshot().LastPoll.IsZero() })
	if err := e.emu.CompleteJob(j.ID); err != nil {
		t.Fatal(err)
	}
	d.Notify(j.ID)
	waitDone(t, d, j.ID)
	e.checkJob(t, j, "")
}
