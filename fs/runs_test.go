package fs

import (
	"testing"

	"github.com/rescalefs/rescalefs/remote"
)

// TestRunOfPath: the run a file's storage path names, and the paths that do not say (the runs are
// then asked).
func TestRunOfPath(t *testing.T) {
	for _, tc := range []struct {
		path, rel string
		run       string // "" = unknown
	}{
		{"user/user_KBdkT/output/job_OsKBd/run1/airFoil2D/system/fvSchemes", "airFoil2D/system/fvSchemes", "1"},
		{"user/u/output/job_OsKBd/run12/process_output.log", "process_output.log", "12"},
		{"user/u/output/job_OsKBd/run3/a.txt", "/a.txt", "3"},
		{"", "a.txt", ""}, // no path
		{"user/u/output/job_OsKBd/run1/b.txt", "a.txt", ""},   // another file's path
		{"user/u/output/job_Other/run1/a.txt", "a.txt", ""},   // another job's
		{"user/u/output/job_OsKBd/runX/a.txt", "a.txt", ""},   // not a run number
		{"user/u/output/job_OsKBd/run/a.txt", "a.txt", ""},    // no number
		{"user/u/output/job_OsKBd/output/a.txt", "a.txt", ""}, // no run folder
		{"user/u/output/job_OsKBd/run1/", "", ""},             // no relative path
	} {
		run, ok := runOfPath("OsKBd", remote.File{Path: tc.path, RelativePath: tc.rel})
		if run != tc.run || ok != (tc.run != "") {
			t.Errorf("runOfPath(%q, %q) = %q, %v; want %q", tc.path, tc.rel, run, ok, tc.run)
		}
	}
}
