// Package names holds the rules for untrusted names from the Rescale API (file relativePaths, file,
// job and library names, ids), shared by the mount (fs) and the background download (download).
//
// A relativePath may be absolute, climb with "..", hold empty or "." components; a name may hold NUL
// or "/" (impossible in a Linux name) or be longer than the kernel accepts. There are two policies over
// one set of rules, because the two users need different things:
//
//   - the mount rewrites (SplitRelPath, Sanitize): every file must be reachable under some name, and the
//     same listing must always give the same tree, so unsafe names become safe look-alikes;
//   - the download refuses (Components): a download folder should hold the platform's names or nothing,
//     so a file whose path is unsafe is skipped with the reason.
//
// Both settle clashes the same way (CompareClaims, WithSuffix), so a download folder shows the names
// `ls` of the mount shows.
package names

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxLen is the longest name the kernel accepts in one path component (NAME_MAX).
const MaxLen = 255

// Replacement characters look like the original, as rclone's encoder does, so a user recognises the
// name: FULLWIDTH SOLIDUS for "/" and SYMBOL FOR NULL for NUL.
const (
	SlashReplacement = "\uFF0F"
	NULReplacement   = "\u2400"
)

// Why Components refuses a relativePath.
var (
	ErrEmpty    = errors.New("empty path")
	ErrNUL      = errors.New("contains a NUL byte")
	ErrAbsolute = errors.New("absolute path")
	ErrDotDot   = errors.New(`contains a ".." component`)
	ErrTooLong  = errors.New("a component is longer than 255 bytes")
)

// Components is the refusing policy: it returns the components of an untrusted relativePath with
// empty and "." ones dropped, or why the path cannot be used as it is. ".." is refused outright rather
// than resolved: a path that climbs is hostile or broken, and guessing where it meant to land could
// overwrite another file.
func Components(rel string) ([]string, error) {
	if strings.IndexByte(rel, 0) >= 0 {
		return nil, ErrNUL
	}
	if strings.HasPrefix(rel, "/") {
		return nil, ErrAbsolute
	}
	parts := strings.Split(rel, "/")
	out := make([]string, 0, len(parts))
	for _, c := range parts {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, ErrDotDot
		}
		if len(c) > MaxLen {
			return nil, ErrTooLong
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ErrEmpty
	}
	return out, nil
}

// SplitRelPath is the rewriting policy for a relativePath: it resolves the path inside a virtual root,
// as path.Clean does for "/"+p, so "../../etc/x" becomes ["etc", "x"], "a/./b//c" becomes
// ["a", "b", "c"], and nothing can climb above the job folder; each component is then made a valid
// name (Sanitize). An empty result (the path was "", "/" or ".."): nil.
func SplitRelPath(p string) []string {
	p = strings.ReplaceAll(p, "\x00", NULReplacement)
	// Backslashes are legal in Linux names; a Windows-made path keeps them as part of the name.
	clean := path.Clean("/" + p)
	if clean == "/" {
		return nil
	}
	parts := strings.Split(clean[1:], "/")
	for i, c := range parts {
		parts[i] = Sanitize(c)
	}
	return parts
}

// Sanitize makes one untrusted name (a file, job or library name) a valid, non-special path
// component: "/" and NUL replaced, "." and ".." and "" given a visible prefix, and names longer than
// MaxLen shortened with a hash of the original so two long names sharing a prefix stay distinct.
func Sanitize(name string) string {
	name = ReplaceSpecial(name)
	switch name {
	case "":
		return "_"
	case ".", "..":
		return "_" + name
	}
	if len(name) > MaxLen {
		name = Shorten(name, MaxLen)
	}
	return name
}

// ReplaceSpecial replaces the two bytes a Linux name cannot hold, "/" and NUL, by look-alikes.
func ReplaceSpecial(name string) string {
	if strings.ContainsAny(name, "/\x00") {
		name = strings.ReplaceAll(name, "/", SlashReplacement)
		name = strings.ReplaceAll(name, "\x00", NULReplacement)
	}
	return name
}

// Shorten cuts name to at most limit bytes: a prefix (cut on a rune boundary), "~", 12 hex digits of
// the sha256 of the whole name, and the extension when it is short, so "result.vtk" files stay
// recognisable by type.
func Shorten(name string, limit int) string {
	sum := sha256.Sum256([]byte(name))
	tag := "~" + hex.EncodeToString(sum[:6])
	ext := path.Ext(name)
	if len(ext) > 16 || strings.ContainsRune(ext, ' ') {
		ext = ""
	}
	stem := name[:len(name)-len(ext)]
	keep := min(limit-len(tag)-len(ext), len(stem))
	for keep > 0 && keep < len(stem) && !utf8.RuneStart(stem[keep]) {
		keep--
	}
	return stem[:max(keep, 0)] + tag + ext
}

// WithSuffix inserts "~suffix" before the extension of name (keeping the result within MaxLen), the
// deterministic way a second file mapping to a taken name gets its own: "out.vtk" -> "out~x1y2.vtk".
func WithSuffix(name, suffix string) string {
	ext := path.Ext(name)
	if ext == name || len(ext) > 16 { // ".bashrc" has no stem; very long "extensions" are not ones
		ext = ""
	}
	stem := name[:len(name)-len(ext)]
	tag := "~" + Sanitize(suffix)
	out := stem + tag + ext
	if len(out) > MaxLen {
		out = Shorten(stem, MaxLen-len(tag)-len(ext)) + tag + ext
	}
	if len(out) > MaxLen { // a pathological suffix: give up on the extension
		out = Shorten(out, MaxLen)
	}
	return out
}

// ValidID says whether s can be a Rescale id used as a name as it is (a job folder, a "~id" suffix):
// letters, digits, '_' and '-', at most 64 bytes (the API's ids are 5 or 6 letters and digits; a
// little slack for other platforms). Anything else is never sent to the platform nor used as a name.
func ValidID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// Claim is a file's claim on a (cleaned) path.
type Claim struct {
	Path     string
	Uploaded time.Time
	ID       string
}

// CompareClaims orders claims by path, then, among claims on one path, the one that keeps the name
// first: the newest upload, then the smallest id. The others get WithSuffix(name, id).
func CompareClaims(a, b Claim) int {
	if c := strings.Compare(a.Path, b.Path); c != 0 {
		return c
	}
	if c := b.Uploaded.Compare(a.Uploaded); c != 0 {
		return c // newest first: the newest keeps the name
	}
	return cmp.Compare(a.ID, b.ID)
}
