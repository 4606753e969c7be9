package fs

import (
	"context"
	"strings"

	"github.com/rescalefs/rescalefs/remote"
)

// A job with several runs (a DOE) shows each run's outputs under run<N>/: the runs' relative paths
// collide in the job's file list (every run has its process_output.log), so each run's own list is read.
// A single-run job keeps the plain layout.

// runDirPrefix names a run's folder: run1, run2, ... as the platform's storage paths do [C].
const runDirPrefix = "run"

// completedTree builds a completed job's tree of outputs.
func (f *fsys) completedTree(ctx context.Context, id string) (*node, error) {
	runs, err := f.client.JobRuns(ctx, id)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	if len(runs) <= 1 {
		files, err := f.client.JobFiles(ctx, id, "")
		if err != nil {
			return nil, err
		}
		root, notes := buildTree(files)
		f.logNotes(id, notes)
		return root, nil
	}
	var all []remote.File
	for _, r := range runs {
		files, err := f.client.RunFiles(ctx, id, r.ID, "")
		if err != nil {
			return nil, err
		}
		for i := range files {
			files[i].RelativePath = runDirPrefix + r.ID + "/" + strings.TrimPrefix(files[i].RelativePath, "/")
		}
		all = append(all, files...)
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
