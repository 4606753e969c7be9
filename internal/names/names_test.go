package names

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestComponents(t *testing.T) {
	long := strings.Repeat("a", 256)
	for _, c := range []struct {
		in   string
		want []string
		err  error
	}{
		{"a.txt", []string{"a.txt"}, nil},
		{"airFoil2D/system/fvSchemes", []string{"airFoil2D", "system", "fvSchemes"}, nil},
		{"./a//b/./c", []string{"a", "b", "c"}, nil},
		{"a/", []string{"a"}, nil},
		{"name with spaces\nand newline", []string{"name with spaces\nand newline"}, nil},
		{`back\slash`, []string{`back\slash`}, nil},
		{"\xff\xfe", []string{"\xff\xfe"}, nil},
		{strings.Repeat("b", 255), []string{strings.Repeat("b", 255)}, nil},
		{"", nil, ErrEmpty},
		{".", nil, ErrEmpty},
		{"//", nil, ErrAbsolute},
		{"../x", nil, ErrDotDot},
		{"a/../../x", nil, ErrDotDot},
		{"a/..", nil, ErrDotDot},
		{"/etc/passwd", nil, ErrAbsolute},
		{"a\x00b", nil, ErrNUL},
		{long, nil, ErrTooLong},
		{"d/" + long + "/x", nil, ErrTooLong},
	} {
		got, err := Components(c.in)
		if !slices.Equal(got, c.want) || !errors.Is(err, c.err) {
			t.Errorf("Components(%q) = %q, %v; want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

func TestSplitRelPath(t *testing.T) {
	long := strings.Repeat("x", 300) + ".vtk"
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a/b/c.txt", []string{"a", "b", "c.txt"}},
		{"/etc/passwd", []string{"etc", "passwd"}},
		{"../../etc/passwd", []string{"etc", "passwd"}},
		{"a/../../b", []string{"b"}},
		{"a//b/./c", []string{"a", "b", "c"}},
		{"", nil},
		{"/", nil},
		{"..", nil},
		{"./x", []string{"x"}},
		{"a/nul\x00here", []string{"a", "nul\u2400here"}},
		{`win\path\file`, []string{`win\path\file`}},
	} {
		if got := SplitRelPath(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitRelPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	got := SplitRelPath("d/" + long)
	if len(got) != 2 || len(got[1]) > MaxLen || !strings.HasSuffix(got[1], ".vtk") {
		t.Errorf("long name: %q (len %d)", got, len(got[1]))
	}
}

func TestSanitize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"", "_"},
		{".", "_."},
		{"..", "_.."},
		{"a/b", "a\uFF0Fb"},
		{"a\x00b", "a\u2400b"},
	} {
		if got := Sanitize(tc.in); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// Long names: bounded, distinct for distinct originals, deterministic, valid UTF-8 cuts.
	a := Sanitize(strings.Repeat("é", 200) + "a.dat")
	b := Sanitize(strings.Repeat("é", 200) + "b.dat")
	if len(a) > MaxLen || len(b) > MaxLen || a == b || a != Sanitize(strings.Repeat("é", 200)+"a.dat") {
		t.Errorf("long names: %q %q", a, b)
	}
	if !strings.HasSuffix(a, ".dat") || !utf8.ValidString(a) {
		t.Errorf("long name lost its extension or UTF-8: %q", a)
	}
}

func TestWithSuffix(t *testing.T) {
	for _, tc := range []struct{ name, suffix, want string }{
		{"out.vtk", "x1y2", "out~x1y2.vtk"},
		{"a", "f4", "a~f4"},
		{".bashrc", "f1", ".bashrc~f1"},
		{"result" + strings.Repeat(".", 1) + strings.Repeat("e", 20), "f1", "result." + strings.Repeat("e", 20) + "~f1"},
		{"x.dat", "a/b", "x~a\uFF0Fb.dat"},
	} {
		if got := WithSuffix(tc.name, tc.suffix); got != tc.want {
			t.Errorf("WithSuffix(%q, %q) = %q, want %q", tc.name, tc.suffix, got, tc.want)
		}
	}
	long := strings.Repeat("é", 130) + ".vtk"
	got := WithSuffix(long, "f1")
	if len(got) > MaxLen || !strings.HasSuffix(got, "~f1.vtk") || !utf8.ValidString(got) {
		t.Errorf("WithSuffix(long) = %q (%d bytes)", got, len(got))
	}
	if got := WithSuffix("x.dat", strings.Repeat("s", 300)); len(got) > MaxLen {
		t.Errorf("pathological suffix: %d bytes", len(got))
	}
}

// Shorten of a name that already fits keeps it whole (before the tag); it used to index past the stem.
func TestShortenShortName(t *testing.T) {
	if got := Shorten("ab.vtk", MaxLen); !strings.HasPrefix(got, "ab~") || !strings.HasSuffix(got, ".vtk") {
		t.Errorf("Shorten(ab.vtk) = %q", got)
	}
}

func TestValidID(t *testing.T) {
	for s, want := range map[string]bool{"OsKBd": true, "abc123": true, "a_b-c": true, "": false, "..": false,
		"a/b": false, "@x": false, strings.Repeat("a", 65): false, "a b": false} {
		if ValidID(s) != want {
			t.Errorf("ValidID(%q) = %v", s, !want)
		}
	}
}

func TestCompareClaims(t *testing.T) {
	t0 := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	claims := []Claim{
		{"b", t0, "f1"},
		{"a", t0, "f9"},
		{"a", t0.Add(time.Minute), "f8"}, // newest on "a": keeps it
		{"a", t0, "f2"},                  // same date: the smaller id first
	}
	slices.SortFunc(claims, CompareClaims)
	var ids []string
	for _, c := range claims {
		ids = append(ids, c.ID)
	}
	if want := []string{"f8", "f2", "f9", "f1"}; !slices.Equal(ids, want) {
		t.Errorf("order %v, want %v", ids, want)
	}
}
