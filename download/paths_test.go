package download

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

func TestLocalPath(t *testing.T) {
	long := strings.Repeat("a", 256)
	for _, c := range []struct {
		in, want string
		err      error
	}{
		{"a.txt", "a.txt", nil},
		{"airFoil2D/system/fvSchemes", "airFoil2D/system/fvSchemes", nil},
		{"./a//b/./c", "a/b/c", nil},
		{"a/", "a", nil},
		{"name with spaces\nand newline", "name with spaces\nand newline", nil},
		{`back\slash`, `back\slash`, nil},
		{"\xff\xfe", "\xff\xfe", nil},
		{strings.Repeat("b", 255), strings.Repeat("b", 255), nil},
		{"", "", names.ErrEmpty},
		{".", "", names.ErrEmpty},
		{"//", "", names.ErrAbsolute},
		{"../x", "", names.ErrDotDot},
		{"a/../../x", "", names.ErrDotDot},
		{"a/..", "", names.ErrDotDot},
		{"..", "", names.ErrDotDot},
		{"/abs", "", names.ErrAbsolute},
		{"/etc/passwd", "", names.ErrAbsolute},
		{"a\x00b", "", names.ErrNUL},
		{long, "", names.ErrTooLong},
		{"d/" + long + "/x", "", names.ErrTooLong},
		{"x.rescalefs-partial", "", errReservedName},
		{"sub/x.rescalefs-partial", "", errReservedName},
		{".rescalefs-done.json", "", errReservedName},
		{".rescalefs-done.json.tmp", "", errReservedName},
		{"sub/.rescalefs-done.json", "sub/.rescalefs-done.json", nil}, // only the job folder's is ours
	} {
		got, err := localPath(c.in)
		if got != c.want || !errors.Is(err, c.err) {
			t.Errorf("localPath(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestPlan(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	mk := func(id, rel string, at time.Time) remote.File {
		name := rel[strings.LastIndex(rel, "/")+1:]
		return remote.File{ID: id, Name: name, RelativePath: rel, IsUploaded: true, DateUploaded: remote.Time{Time: at}}
	}
	deleted := mk("f9", "gone.csv", t0)
	deleted.IsDeleted = true
	files := []remote.File{
		mk("f1", "out/result.csv", t0),
		mk("f2", "out/result.csv", t0.Add(time.Minute)), // newer: keeps the name
		mk("f3", "mesh.vtk", t0),
		mk("f4", "a", t0),   // also a folder below: the file is renamed
		mk("f5", "a/b", t0), //
		mk("f6", "../evil", t0),
		mk("f1", "out/result.csv", t0), // listed twice
		deleted,
	}
	cases := []struct {
		query string
		want  map[string]string // rel -> id
		skips int
	}{
		{"", map[string]string{"out/result.csv": "f2", "out/result~f1.csv": "f1", "mesh.vtk": "f3", "a~f4": "f4", "a/b": "f5"}, 1},
		{"result", map[string]string{"out/result.csv": "f2", "out/result~f1.csv": "f1"}, 1},
		{"Result", map[string]string{}, 1}, // case-sensitive
		{"out", map[string]string{}, 1},    // the name, not the folder
	}
	for _, c := range cases {
		items, skips := plan(files, c.query)
		got := map[string]string{}
		for _, it := range items {
			got[it.rel] = it.f.ID
		}
		if len(got) != len(c.want) || len(skips) != c.skips {
			t.Errorf("plan(%q) = %v, %d skipped; want %v, %d", c.query, got, len(skips), c.want, c.skips)
			continue
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("plan(%q)[%q] = %q, want %q", c.query, k, got[k], v)
			}
		}
	}
}

func TestPartialPath(t *testing.T) {
	if got := partialPath("d/x.dat"); got != "d/x.dat"+partialSuffix {
		t.Errorf("partialPath = %q", got)
	}
	long := strings.Repeat("n", 250)
	got := partialPath("d/" + long)
	name := got[strings.LastIndex(got, "/")+1:]
	if !strings.HasPrefix(got, "d/") || len(name) > names.MaxLen || !strings.HasSuffix(name, partialSuffix) {
		t.Errorf("partialPath(long) = %q", got)
	}
}

func TestRetryDelay(t *testing.T) {
	for _, c := range []struct {
		poll     time.Duration
		failures int
		want     time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 4, 8 * time.Second},
		{time.Minute, 100, maxRetryDelay},
		{time.Hour, 3, time.Hour}, // never below Poll
	} {
		if got := retryDelay(c.poll, c.failures); got != c.want {
			t.Errorf("retryDelay(%v, %d) = %v, want %v", c.poll, c.failures, got, c.want)
		}
	}
}
