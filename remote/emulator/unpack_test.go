package emulator

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one member of a crafted archive: a file, or a symlink when link is set.
type entry struct{ name, body, link string }

func writeTar(t *testing.T, path string, entries []entry) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.body)), Typeflag: tar.TypeReg}
		if e.link != "" {
			h = &tar.Header{Name: e.name, Linkname: e.link, Mode: 0o777, Typeflag: tar.TypeSymlink}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeZip(t *testing.T, path string, entries []entry) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Store}
		body := e.body
		if e.link != "" {
			h.SetMode(os.ModeSymlink | 0o777)
			body = e.link
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestUnpackStaysInWorkDir: an archive is data from anyone the library holds files of; none of its
// entries may write outside the run's work directory: ../ and absolute names land inside it, a symlink
// pointing out is refused, and a zip's symlink is written as a plain file.
func TestUnpackStaysInWorkDir(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ext     string
		entries []entry
		refused bool
		inside  map[string]string // path in the work dir -> content
	}{
		{"dot-dot", ".tar", []entry{{name: "../../escaped", body: "x"}}, false, map[string]string{"escaped": "x"}},
		{"absolute", ".tar", []entry{{name: "ROOT/escaped", body: "x"}}, false, map[string]string{"ROOT/escaped": "x"}},
		{"symlink to an absolute path", ".tar", []entry{{name: "l", link: "ROOT"}, {name: "l/escaped", body: "x"}}, true, nil},
		{"symlink up", ".tar", []entry{{name: "l", link: "../.."}, {name: "l/escaped", body: "x"}}, true, nil},
		{"symlink hidden below", ".tar", []entry{{name: "a/l", link: "b/../../.."}, {name: "a/l/escaped", body: "x"}}, true, nil},
		{"symlink inside", ".tar", []entry{{name: "sub/keep", body: "k"}, {name: "l", link: "sub"}, {name: "l/through", body: "y"}}, false,
			map[string]string{"sub/keep": "k", "sub/through": "y"}},
		{"zip dot-dot", ".zip", []entry{{name: "../../escaped", body: "x"}}, false, map[string]string{"escaped": "x"}},
		{"zip symlink", ".zip", []entry{{name: "l", link: "/etc"}}, false, map[string]string{"l": "/etc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir() // root/in/<archive>, root/a/b/work: an escape lands in root
			// ROOT in a name or a link target is root's absolute path.
			var entries []entry
			for _, e := range tc.entries {
				e.name, e.link = strings.ReplaceAll(e.name, "ROOT", root), strings.ReplaceAll(e.link, "ROOT", root)
				entries = append(entries, e)
			}
			work := filepath.Join(root, "a", "b", "work")
			if err := os.MkdirAll(work, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(filepath.Join(root, "in"), 0o700); err != nil {
				t.Fatal(err)
			}
			archive := filepath.Join(root, "in", "x"+tc.ext)
			if tc.ext == ".zip" {
				writeZip(t, archive, entries)
			} else {
				writeTar(t, archive, entries)
			}
			err := unpack(archive, work)
			if tc.refused != (err != nil) {
				t.Fatalf("unpack: %v (refusal wanted: %v)", err, tc.refused)
			}
			// Nothing outside the work directory: root holds only in/ and a/b/work.
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
				if err != nil || p == work || strings.HasPrefix(p, work+string(filepath.Separator)) {
					return nil
				}
				switch rel, _ := filepath.Rel(root, p); rel {
				case ".", "in", filepath.Join("in", "x"+tc.ext), "a", filepath.Join("a", "b"):
				default:
					t.Errorf("written outside the work directory: %s", rel)
				}
				return nil
			})
			for p, want := range tc.inside {
				p = strings.ReplaceAll(p, "ROOT", root)
				fi, err := os.Lstat(filepath.Join(work, p))
				if err != nil {
					t.Errorf("%s: %v", p, err)
					continue
				}
				if !fi.Mode().IsRegular() {
					t.Errorf("%s: mode %v, want a regular file", p, fi.Mode())
					continue
				}
				if b, _ := os.ReadFile(filepath.Join(work, p)); string(b) != want {
					t.Errorf("%s = %q, want %q", p, b, want)
				}
			}
		})
	}
}
