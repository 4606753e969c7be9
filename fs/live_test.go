package fs

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

func TestBuildLiveTree(t *testing.T) {
	var got []string // the original paths asked for, in order
	get := func(path string, comps []string) *liveFile {
		got = append(got, path)
		return &liveFile{path: path, comps: comps}
	}
	root, notes := buildLiveTree([]remote.LiveFile{
		{Path: "process_output.log"},
		{Path: "airFoil2D/0/U"},
		{Path: "airFoil2D/0/U"}, // listed twice: once
		{Path: "./airFoil2D/0/p"},
		{Path: "../../etc/passwd"}, // cleaned into the job folder
		{Path: "a"},                // a file, and a folder below: the folder keeps the name
		{Path: "a/b"},
		{Path: ""}, // nothing usable
		{Path: "/"},
	}, get)
	if want := []string{"a/", "a/b", "airFoil2D/", "airFoil2D/0/", "airFoil2D/0/U", "airFoil2D/0/p", "a~*",
		"etc/", "etc/passwd", "process_output.log"}; !matchPaths(paths(root, ""), want) {
		t.Errorf("tree %v, want %v", paths(root, ""), want)
	}
	if len(got) != 6 {
		t.Errorf("live files made for %v", got)
	}
	if n := root.walk([]string{"airFoil2D", "0", "p"}); n == nil || n.live == nil || n.live.path != "./airFoil2D/0/p" ||
		!slices.Equal(n.live.comps, []string{"airFoil2D", "0", "p"}) || n.isDir() {
		t.Errorf("airFoil2D/0/p: %+v", n)
	}
	if root.files != 6 || root.dirs != 3 {
		t.Errorf("files %d dirs %d", root.files, root.dirs)
	}
	reasons := map[string]int{}
	for _, n := range notes {
		reasons[n.Reason]++
	}
	if reasons["unsafe path"] != 1 || reasons["duplicate name"] != 1 || reasons["unusable live path"] != 2 {
		t.Errorf("notes %+v", notes)
	}
	// Filters see live files by name.
	if f := filterTree(root, "pass"); f.files != 1 {
		t.Errorf("filter: %d files", f.files)
	}
}

// matchPaths compares path lists, "*" in want matching any tail.
func matchPaths(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if w, ok := strings.CutSuffix(want[i], "*"); ok && strings.HasPrefix(got[i], w) || got[i] == want[i] {
			continue
		}
		return false
	}
	return true
}

func TestRunActive(t *testing.T) {
	for s, want := range map[string]bool{"Pending": false, "Queued": false, "Started": true, "Validated": true,
		"Executing": true, "Stopping": true, "Completed": false, "": false} {
		if runActive(s) != want {
			t.Errorf("runActive(%q) = %v", s, !want)
		}
	}
}

func TestFailedView(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	m := newJobsModel()
	m.applyList([]remote.Job{
		job("OK1", "fine", "Completed", t0),
		job("Bad1", "diverged", "Completed", t0),
		job("Stop1", "stopped", "Completed", t0),
		job("Run1", "running", "Executing", t0),
		job("Unk1", "no history yet", "Completed", t0),
	})
	m.setStatuses("OK1", remote.Statuses{{Status: "Completed", StatusReason: remote.ReasonSucceeded,
		StatusDate: remote.Time{Time: t0.Add(3 * time.Hour)}}}, "Completed")
	m.setStatuses("Bad1", remote.Statuses{
		{Status: "Completed", StatusReason: "A run failed", StatusDate: remote.Time{Time: t0.Add(2 * time.Hour)}},
		{Status: "Stopping", StatusReason: "A run failed", StatusDate: remote.Time{Time: t0.Add(time.Hour)}},
	}, "Completed")
	m.setStatuses("Stop1", remote.Statuses{
		{Status: "Completed", StatusReason: "Job stopped by user", StatusDate: remote.Time{Time: t0.Add(4 * time.Hour)}},
	}, "Completed")
	all := m.list()
	var ids []string
	for _, j := range failedJobs(all, 0, t0.Add(5*time.Hour)) {
		ids = append(ids, j.ID)
	}
	if !slices.Equal(ids, []string{"Stop1", "Bad1"}) { // newest completion first; Unk1's outcome unknown
		t.Errorf("failed %v", ids)
	}
	v := makeViews(all, 0, t0.Add(5*time.Hour))
	if len(v.failed) != 2 || len(v.completed) != 4 || v.failed["Bad1"] != v.completed["Bad1"] {
		t.Errorf("views %+v", v)
	}
	outcome := func(id string) string {
		j, _ := m.get(id)
		for _, x := range jobXattrs(j) {
			if x.name == "outcome" {
				return x.value
			}
		}
		return ""
	}
	for id, want := range map[string]string{"OK1": "succeeded", "Bad1": "failed", "Stop1": "failed", "Run1": "", "Unk1": ""} {
		if got := outcome(id); got != want {
			t.Errorf("%s outcome %q, want %q", id, got, want)
		}
	}
}
