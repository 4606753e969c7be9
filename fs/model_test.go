package fs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

func TestByNameEntry(t *testing.T) {
	if got := byNameEntry("the FOAM 2", "OsKBd"); got != "the FOAM 2 (OsKBd)" {
		t.Errorf("got %q", got)
	}
	if got := byNameEntry("a/b", "X1"); got != "a\uFF0Fb (X1)" {
		t.Errorf("got %q", got)
	}
	if got := byNameEntry("", "X1"); got != "unnamed (X1)" {
		t.Errorf("got %q", got)
	}
	got := byNameEntry(strings.Repeat("n", 400), "X1")
	if len(got) > names.MaxLen || !strings.HasSuffix(got, " (X1)") {
		t.Errorf("long: %q", got)
	}
}

func mkFile(id, rel string, size int64, uploaded time.Time) remote.File {
	name := rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		name = rel[i+1:]
	}
	return remote.File{ID: id, Name: name, RelativePath: rel, DecryptedSize: size,
		DateUploaded: remote.Time{Time: uploaded}, IsUploaded: true}
}

// paths lists a tree as "path" for files and "path/" for folders, depth first.
func paths(n *node, prefix string) []string {
	var out []string
	for _, c := range n.list {
		if c.isDir() {
			out = append(out, prefix+c.name+"/")
			out = append(out, paths(c, prefix+c.name+"/")...)
		} else {
			out = append(out, prefix+c.name)
		}
	}
	return out
}

func TestBuildTree(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	files := []remote.File{
		mkFile("f1", "airFoil2D/system/fvSchemes", 10, t0),
		mkFile("f2", "airFoil2D/0/U", 20, t0.Add(time.Hour)),
		mkFile("f3", "process_output.log", 5, t0),
		mkFile("f4", "../../etc/passwd", 1, t0),         // escapes: cleaned into the job
		mkFile("f5", "/abs/file", 1, t0),                // absolute
		mkFile("f6", "dup.txt", 1, t0),                  // duplicate, older
		mkFile("f7", "dup.txt", 1, t0.Add(time.Minute)), // duplicate, newer: keeps the name
		mkFile("f8", "airFoil2D", 3, t0),                // a file where a folder is
		mkFile("f9", "", 4, t0),                         // no path: its name
		{ID: "gone", RelativePath: "deleted.txt", IsUploaded: true, IsDeleted: true},
		{ID: "notyet", RelativePath: "pending.txt"},
		mkFile("f3", "process_output.log", 5, t0), // listed twice
	}
	files[8].Name = "named.dat"
	root, notes := buildTree(files)
	want := []string{
		"abs/", "abs/file",
		"airFoil2D/", "airFoil2D/0/", "airFoil2D/0/U", "airFoil2D/system/", "airFoil2D/system/fvSchemes",
		"airFoil2D~f8",
		"dup.txt", "dup~f6.txt",
		"etc/", "etc/passwd",
		"named.dat",
		"process_output.log",
	}
	if got := paths(root, ""); !slices.Equal(got, want) {
		t.Errorf("tree:\n got %q\nwant %q", got, want)
	}
	if root.files != 9 || root.bytes != 10+20+5+1+1+1+1+3+4 {
		t.Errorf("aggregates: files %d bytes %d", root.files, root.bytes)
	}
	if !root.mtime.Equal(t0.Add(time.Hour)) {
		t.Errorf("root mtime %v", root.mtime)
	}
	if root.dirs != 3 || root.child("airFoil2D").dirs != 2 {
		t.Errorf("dirs: %d %d", root.dirs, root.child("airFoil2D").dirs)
	}
	if len(notes) != 4 { // f4, f5 cleaned; f6, f8 renamed
		t.Errorf("notes: %+v", notes)
	}
	// Same input in another order: the same tree.
	rev := slices.Clone(files)
	slices.Reverse(rev)
	root2, _ := buildTree(rev)
	if got := paths(root2, ""); !slices.Equal(got, want) {
		t.Errorf("order-dependent tree: %q", got)
	}
}

func TestBuildTreeHostile(t *testing.T) {
	t0 := time.Now()
	long := strings.Repeat("L", 300)
	files := []remote.File{
		mkFile("a", "..", 1, t0),
		mkFile("b", ".", 1, t0),
		mkFile("c", "x/../..", 1, t0),
		mkFile("d", long, 1, t0),
		mkFile("e", long, 1, t0),
		mkFile("f", "ok/"+long+"/in", 1, t0),
		mkFile("g", "s p a c e s/ /x", 1, t0),
	}
	files[0].Name, files[1].Name, files[2].Name = "", "", ""
	root, _ := buildTree(files)
	var check func(n *node)
	seen := map[string]bool{}
	check = func(n *node) {
		for _, c := range n.list {
			if c.name == "" || c.name == "." || c.name == ".." || strings.ContainsAny(c.name, "/\x00") || len(c.name) > names.MaxLen {
				t.Errorf("bad name %q", c.name)
			}
			if c.isDir() {
				check(c)
			} else {
				seen[c.file.ID] = true
			}
		}
	}
	check(root)
	if len(seen) != len(files) {
		t.Errorf("files kept: %v", seen)
	}
}

func TestFilter(t *testing.T) {
	t0 := time.Now()
	root, _ := buildTree([]remote.File{
		mkFile("1", "a/x.vtk", 1, t0),
		mkFile("2", "a/y.dat", 1, t0),
		mkFile("3", "b/c/z.vtk", 1, t0),
		mkFile("4", "b/d/w.dat", 1, t0),
		mkFile("5", "vtk/readme", 1, t0), // the folder matches, the file does not: pruned
		mkFile("6", "top.VTK", 1, t0),    // case-sensitive
	})
	got := paths(filterTree(root, ".vtk"), "")
	want := []string{"a/", "a/x.vtk", "b/", "b/c/", "b/c/z.vtk"}
	if !slices.Equal(got, want) {
		t.Errorf("filter .vtk: %q, want %q", got, want)
	}
	if got := paths(filterTree(root, "nomatch"), ""); len(got) != 0 {
		t.Errorf("no match: %q", got)
	}

	var m filterMemo
	for _, tc := range []struct {
		vpath []string
		want  []string // nil: does not resolve
	}{
		{[]string{"@.vtk"}, want},
		{[]string{"b", "@.vtk"}, []string{"c/", "c/z.vtk"}},
		{[]string{"@.vtk", "b", "c"}, []string{"z.vtk"}},
		{[]string{"@.vtk", "@x"}, []string{"a/", "a/x.vtk"}}, // filters compose
		{[]string{"@.vtk", "vtk"}, nil},                      // pruned
		{[]string{"missing"}, nil},
		{[]string{"@"}, nil}, // a bare @ is not a filter
		{[]string{"a", "x.vtk", "@x"}, nil},
	} {
		n := m.resolve(root, tc.vpath)
		if tc.want == nil {
			if n != nil && n.isDir() {
				t.Errorf("resolve %q: got a folder, want none", tc.vpath)
			}
			continue
		}
		if n == nil {
			t.Errorf("resolve %q: nil", tc.vpath)
			continue
		}
		if got := paths(n, ""); !slices.Equal(got, tc.want) {
			t.Errorf("resolve %q: %q, want %q", tc.vpath, got, tc.want)
		}
	}
	if m.get(root, ".vtk") != m.get(root, ".vtk") {
		t.Error("memo does not memoise")
	}
}

func TestBuildLibrary(t *testing.T) {
	t0 := time.Now()
	lib, _ := buildLibrary([]remote.File{
		{ID: "1", Name: "mesh.msh", DateUploaded: remote.Time{Time: t0}, IsUploaded: true},
		{ID: "2", Name: "mesh.msh", DateUploaded: remote.Time{Time: t0.Add(time.Hour)}, IsUploaded: true},
		{ID: "3", Name: "a/b", DateUploaded: remote.Time{Time: t0}, IsUploaded: true},
		{ID: "4", Name: "..", IsUploaded: true},
		{ID: "5", Name: "deleted", IsUploaded: true, IsDeleted: true},
	})
	got := paths(lib, "")
	// A name uploaded twice: the newest keeps it, the older one shows beside it with its id (issue 8).
	if want := []string{"_..", "a\uFF0Fb", "mesh.msh", "mesh~1.msh"}; !slices.Equal(got, want) {
		t.Errorf("library %q, want %q", got, want)
	}
	if lib.child("mesh.msh").file.ID != "2" {
		t.Error("newest does not win")
	}
	if lib.child("mesh~1.msh").file.ID != "1" {
		t.Error("the older upload of a name is not reachable")
	}
}

func job(id, name, status string, inserted time.Time) remote.Job {
	return remote.Job{ID: id, Name: name, JobStatus: remote.Label{Content: status}, DateInserted: remote.Time{Time: inserted}}
}

func statuses(pairs ...any) remote.Statuses {
	var s remote.Statuses
	for i := 0; i < len(pairs); i += 2 {
		s = append(s, remote.Status{Status: pairs[i].(string), StatusDate: remote.Time{Time: pairs[i+1].(time.Time)}})
	}
	return s
}

func TestJobsModel(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	m := newJobsModel()
	invalid := m.applyList([]remote.Job{
		job("A1", "old", "Completed", t0),
		job("B2", "new", "Completed", t0.Add(time.Hour)),
		job("C3", "running", "Executing", t0.Add(2*time.Hour)),
		job("../x", "evil", "Completed", t0),
	})
	if need := m.staleStatuses(); !slices.Equal(need, []string{"A1", "B2", "C3"}) || !slices.Equal(invalid, []string{"../x"}) {
		t.Fatalf("need %v invalid %v", need, invalid)
	}
	m.setStatuses("A1", statuses("Completed", t0.Add(10*24*time.Hour), "Executing", t0), "Completed")
	m.setStatuses("B2", statuses("Completed", t0.Add(5*time.Hour)), "Completed")
	m.setStatuses("C3", statuses("Executing", t0.Add(3*time.Hour)), "Executing")

	now := t0.Add(11 * 24 * time.Hour)
	all := m.list()
	ids := func(js []jobInfo) []string {
		var out []string
		for _, j := range js {
			out = append(out, j.ID)
		}
		return out
	}
	if got := ids(completedJobs(all, 0, now)); !slices.Equal(got, []string{"A1", "B2"}) {
		t.Errorf("completed newest first: %v", got)
	}
	if got := ids(completedJobs(all, 2*24*time.Hour, now)); !slices.Equal(got, []string{"A1"}) {
		t.Errorf("completed within max age: %v", got)
	}
	a, _ := m.get("A1")
	if !a.StatusDate.Equal(t0.Add(10*24*time.Hour)) || !a.Completed || a.Status != "Completed" {
		t.Errorf("A1 info %+v", a)
	}

	// Next poll: C3 completed, B2 gone, D4 new. Only changed jobs need their statuses again.
	before := makeViews(m.list(), 0, now)
	m.applyList([]remote.Job{
		job("A1", "old", "Completed", t0),
		job("C3", "running", "Completed", t0.Add(2*time.Hour)),
		job("D4", "fresh", "Pending", now),
	})
	if need := m.staleStatuses(); !slices.Equal(need, []string{"C3", "D4"}) {
		t.Errorf("need %v", need)
	}
	m.setStatuses("C3", statuses("Completed", now, "Executing", t0.Add(3*time.Hour)), "Completed")
	after := makeViews(m.list(), 0, now)
	if got := changed(before.jobs, after.jobs); !slices.Equal(got, []string{"B2", "C3", "D4"}) {
		t.Errorf("jobs changed %v", got)
	}
	if got := changed(before.completed, after.completed); !slices.Equal(got, []string{"B2", "C3"}) {
		t.Errorf("completed changed %v", got)
	}
	if got := changed(before.byName, after.byName); !slices.Equal(got, []string{"fresh (D4)", "new (B2)"}) {
		t.Errorf("by-name changed %v", got)
	}
	if _, ok := m.get("B2"); ok {
		t.Error("B2 still known")
	}

	// Missing ids are remembered for a while.
	m.setMissing("ZZ", now.Add(time.Minute))
	if !m.isMissing("ZZ", now) || m.isMissing("ZZ", now.Add(2*time.Minute)) {
		t.Error("missing cache")
	}
}

func TestXattrs(t *testing.T) {
	f := &remote.File{ID: "x1", FileChecksums: []remote.Checksum{{HashFunction: "sha512", FileHash: "ABC"}}}
	xs := fileXattrs(f, "J1")
	n, errno := getxattr(xs, "user.rescale.sha512", nil)
	if errno != 0 || n != 3 {
		t.Fatalf("size query: %d %v", n, errno)
	}
	buf := make([]byte, 2)
	if _, errno := getxattr(xs, "user.rescale.sha512", buf); errno == 0 {
		t.Error("short buffer accepted")
	}
	buf = make([]byte, 64)
	n, _ = getxattr(xs, "user.rescale.sha512", buf)
	if string(buf[:n]) != "abc" {
		t.Errorf("sha512 %q", buf[:n])
	}
	if _, errno := getxattr(xs, "user.other", buf); errno == 0 {
		t.Error("unknown attribute found")
	}
	n, _ = listxattr(xs, make([]byte, 256))
	if n == 0 {
		t.Error("empty list")
	}
}

func TestIno(t *testing.T) {
	if ino("file:a") == ino("file:b") || ino("file:a") != ino("file:a") {
		t.Error("ino not a stable hash")
	}
	for _, k := range []string{"", "job:x", "dir:x/"} {
		if n := ino(k); n < inoFirstHashed || n >= 1<<63 {
			t.Errorf("ino(%q) = %d out of range", k, n)
		}
	}
}

func TestErrno(t *testing.T) {
	f := newFsys(Options{}, nil, nil)
	defer f.cancel()
	for _, tc := range []struct {
		err  error
		want syscall.Errno
	}{
		{nil, 0},
		{fmt.Errorf("get job: %w", remote.ErrNotFound), syscall.ENOENT},
		{&remote.APIError{Status: 404}, syscall.ENOENT},
		{&remote.APIError{Status: 401}, syscall.EACCES},
		{fmt.Errorf("x: %w", remote.ErrForbidden), syscall.EACCES},
		{fmt.Errorf("x: %w", context.Canceled), syscall.EINTR},
		{fmt.Errorf("x: %w", syscall.EROFS), syscall.EROFS},
		{&remote.APIError{Status: 500}, syscall.EIO},
		{errors.New("anything"), syscall.EIO},
		// A socket's errno is not the file's: a refused or reset connection is an I/O error.
		{fmt.Errorf("read: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), syscall.EIO},
		{fmt.Errorf("read: %w: %w", remote.ErrUnreachable, syscall.ECONNRESET), syscall.EIO},
		{fmt.Errorf("staging: %w", &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC}), syscall.ENOSPC},
	} {
		if got := f.errno("op", tc.err); got != tc.want {
			t.Errorf("errno(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// Two keys whose hashes give one number get different numbers (go-fuse would otherwise serve one
// object's node for the other), each stable across lookups, and the first comer keeps its number.
func TestInoClashDetected(t *testing.T) {
	// A weak hash that clashes on purpose: the number is the key's length (kept clear of the fixed
	// numbers), moved by the probe; the check tells the keys apart.
	weak := func(key string, probe int) (uint64, uint64) {
		return inoFirstHashed + uint64(len(key)) + uint64(probe)*1000, uint64(len(key))<<32 | uint64(key[len(key)-1])
	}
	tab := newInoTable(weak)
	a, b, c := tab.ino("file:aa"), tab.ino("file:ab"), tab.ino("file:ac")
	if a == b || b == c || a == c {
		t.Fatalf("clashing keys share a number: %d %d %d", a, b, c)
	}
	if a != inoFirstHashed+7 {
		t.Errorf("the first key moved: %d", a)
	}
	for range 3 {
		if tab.ino("file:ab") != b || tab.ino("file:aa") != a || tab.ino("file:ac") != c {
			t.Fatal("numbers not stable across lookups")
		}
	}
	if tab.clashes != 2 {
		t.Errorf("%d clashes counted, want 2", tab.clashes)
	}
	// The real hash: distinct, stable, in range.
	if ino("file:a") == ino("file:b") || ino("file:a") != ino("file:a") {
		t.Error("ino not a stable hash")
	}
}
