package fs_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestWalkJobsOneRequestEach: walking the outputs of many completed single-run jobs (the
// completed/@text/ filter lists every completed job's files; find and cp -r enter every job folder)
// costs one file-list request per job and no runs request: a job's files name their run in their
// storage path, so only a job whose files show several runs asks for its runs.
func TestWalkJobsOneRequestEach(t *testing.T) {
	const jobs = 6
	var specs []emulator.JobSpec
	for i := range jobs {
		specs = append(specs, emulator.JobSpec{ID: fmt.Sprintf("Walk%02d", i), Files: []emulator.FileSpec{
			{RelativePath: "case/result.vtk", Size: 100},
			{RelativePath: "notes.txt", Size: 10},
		}})
	}
	for _, tc := range []struct {
		name string
		walk func(t *testing.T, dir string) int // the number of job folders it saw
	}{
		{"completed/@vtk", func(t *testing.T, dir string) int {
			es, err := os.ReadDir(filepath.Join(dir, "completed", "@vtk"))
			if err != nil {
				t.Fatal(err)
			}
			return len(es)
		}},
		{"find jobs", func(t *testing.T, dir string) int {
			out, err := exec.Command("find", filepath.Join(dir, "jobs"), "-name", "result.vtk").CombinedOutput()
			if err != nil {
				t.Fatalf("find: %v: %s", err, out)
			}
			return strings.Count(string(out), "result.vtk")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := fusetest.Mount(t, fusetest.Options{Jobs: specs})
			if n := tc.walk(t, env.Dir); n != jobs {
				t.Fatalf("the walk saw %d jobs, want %d", n, jobs)
			}
			for _, c := range []struct {
				endpoint string
				want     int64
			}{
				{emulator.EndpointJobFiles, jobs},
				{emulator.EndpointRuns, 0},
				{emulator.EndpointRunFiles, 0},
			} {
				if got := env.Requests(c.endpoint); got != c.want {
					t.Errorf("%s: %d requests for %d jobs, want %d", c.endpoint, got, jobs, c.want)
				}
			}
		})
	}
}
