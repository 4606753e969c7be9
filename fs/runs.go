package fs

import (
	"context"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/rescalefs/rescalefs/remote"
)

// A job with several runs (a DOE) shows each run's outputs under run<N>/: the runs' relative paths
// collide in the job's file list (every run has its process_output.log), so the files are grouped by
// run. A single-run job keeps the plain layout.
//
// The job's file list comes first, in one request: each file's storage path names its run
// (.../job_<id>/run<N>/<relativePath> [C]), so a job whose outputs are all in run1 (every job but a DOE)
// costs no runs request, and a walk of many jobs (completed/@text/, find, cp -r) one request per job,
// not two. The runs are asked only when the paths show another run (their variables are the run
// folders' xattrs), or do not say (then each run's own list is read, as the platform's docs advise).
// A DOE job whose outputs are all in run1 (its other runs left none, not even a log) shows the plain
// layout, without run1's variables.

// runDirPrefix names a run's folder: run1, run2, ... as the platform's storage paths do [C].
const runDirPrefix = "run"

// firstRun is the id of a job's first (for every job but a DOE, its only) run [C].
const firstRun = "1"

// completedTree builds a completed job's tree of outputs.
func (f *fsys) completedTree(ctx context.Context, id string) (*node, error) {
	files, err := f.client.JobFiles(ctx, id, "")
	if err != nil {
		return nil, err
	}
	byRun, known := filesByRun(id, files)
	if known && (len(byRun) == 0 || len(byRun) == 1 && byRun[firstRun] != nil) {
		return f.plainTree(id, files), nil
	}
	runs, err := f.client.JobRuns(ctx, id)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	if len(runs) <= 1 {
		return f.plainTree(id, files), nil
	}
	if !known {
		byRun = make(map[string][]remote.File, len(runs))
		for _, r := range runs {
			if byRun[r.ID], err = f.client.RunFiles(ctx, id, r.ID, ""); err != nil {
				return nil, err
			}
		}
	}
	var all []remote.File
	for _, run := range slices.Sorted(maps.Keys(byRun)) { // in one order, so the notes are stable
		for _, file := range byRun[run] {
			file.RelativePath = runDirPrefix + run + "/" + strings.TrimPrefix(file.RelativePath, "/")
			all = append(all, file)
		}
	}
	root, notes := buildTree(all)
	f.logNotes(id, notes)
	// Before the tree is published: once shared it is never changed.
	for _, r := range runs {
		if d := root.child(runDirPrefix + r.ID); d != nil && d.isDir() {
			d.xattrs = runXattrs(r)
		}
	}
	return root, nil
}

// plainTree is the tree of a single-run job's files.
func (f *fsys) plainTree(id string, files []remote.File) *node {
	root, notes := buildTree(files)
	f.logNotes(id, notes)
	return root
}

// filesByRun groups a job's files by the run their storage path names; known is false when a path
// does not end in job_<jobID>/run<N>/<relativePath> (the runs must then be asked).
func filesByRun(jobID string, files []remote.File) (byRun map[string][]remote.File, known bool) {
	byRun = map[string][]remote.File{}
	for _, file := range files {
		run, ok := runOfPath(jobID, file)
		if !ok {
			return nil, false
		}
		byRun[run] = append(byRun[run], file)
	}
	return byRun, true
}

// runOfPath is the run id a file's storage path names: N in .../job_<jobID>/run<N>/<relativePath>.
func runOfPath(jobID string, file remote.File) (string, bool) {
	rel := strings.TrimPrefix(file.RelativePath, "/")
	dir, ok := strings.CutSuffix(file.Path, "/"+rel)
	if !ok || rel == "" {
		return "", false
	}
	job, run := path.Split(dir)
	if path.Base(job) != "job_"+jobID {
		return "", false
	}
	n, ok := strings.CutPrefix(run, runDirPrefix)
	if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
		return "", false
	}
	return n, true
}

// runXattrs are a run folder's attributes: its id, then its variables (DOE inputs and the outputs the
// post-processing step printed), each as user.rescale.<name>.
func runXattrs(r remote.Run) []xattr {
	xs := []xattr{{"run", r.ID}}
	for _, v := range r.Variables {
		if v.Name == "" || v.Name == "run" || v.Name == "job" || strings.ContainsAny(v.Name, "\x00/") {
			continue
		}
		xs = append(xs, xattr{v.Name, v.DisplayValue})
	}
	return compact(xs)
}

// RunFiles passes a run's files to Options.FileSeen, as JobFiles does.
func (r registering) RunFiles(ctx context.Context, jobID, runID, search string) ([]remote.File, error) {
	files, err := r.platform.RunFiles(ctx, jobID, runID, search)
	if err == nil {
		r.seen(files...)
	}
	return files, err
}
