package fs

import (
	"fmt"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// The filter memo keeps at most maxFilterMemoFiles files alive (source trees included), and a tree
// larger than that alone; its answers are the filtered trees.
func TestFilterMemoBoundedByFiles(t *testing.T) {
	tree := func(job, n int) *node {
		var fs []remote.File
		for i := range n {
			fs = append(fs, mkFile(fmt.Sprintf("f%d-%d", job, i), fmt.Sprintf("d/x%05d.vtk", i), 1, time.Unix(0, 0)))
		}
		root, _ := buildTree(fs)
		return root
	}
	var fm filterMemo
	per := maxFilterMemoFiles / 10
	for j := range 40 {
		src := tree(j, per)
		if got := fm.get(src, ".vtk"); got.files != per {
			t.Fatalf("job %d: filtered tree has %d files, want %d", j, got.files, per)
		}
		if fm.files > maxFilterMemoFiles {
			t.Fatalf("after %d jobs the memo keeps %d files alive, bound %d", j+1, fm.files, maxFilterMemoFiles)
		}
	}
	big := tree(99, 2*maxFilterMemoFiles)
	first := fm.get(big, ".vtk")
	if again := fm.get(big, ".vtk"); again != first {
		t.Error("a tree larger than the bound is not memoized")
	}
}
