package fs

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
	"unicode/utf8"
)

// Names from the API are untrusted: a relativePath may be absolute, climb with "..", hold empty or "."
// components; a name may hold NUL or "/" (impossible in a Linux name) or be longer than the kernel
// accepts. Everything here turns such input into safe names deterministically, so the same listing
// always gives the same tree (inode numbers and paths stay stable across mounts).

// maxNameLen is the longest name the kernel accepts in one path component (NAME_MAX).
const maxNameLen = 255

// Replacement characters look like the original, as rclone's encoder does, so a user recognises the
// name: FULLWIDTH SOLIDUS for "/" and SYMBOL FOR NULL for NUL.
const (
	slashReplacement = "\uFF0F"
	nulReplacement   = "\u2400"
)

// splitRelPath cleans an API relativePath into safe components. It resolves the path inside a virtual
// root, as path.Clean does for "/"+p: "../../etc/x" becomes ["etc", "x"], "a/./b//c" becomes
// ["a", "b", "c"], and nothing can climb above the job folder. Each component is then made a valid
// name. An empty result (the path was "", "/" or ".."): nil.
func splitRelPath(p string) []string {
	p = strings.ReplaceAll(p, "\x00", nulReplacement)
	// Backslashes are legal in Linux names; a Windows-made path keeps them as part of the name.
	clean := path.Clean("/" + p)
	if clean == "/" {
		return nil
	}
	parts := strings.Split(clean[1:], "/")
	for i, c := range parts {
		parts[i] = sanitizeName(c)
	}
	return parts
}

// sanitizeName makes one untrusted name (a file, job or library name) a valid, non-special path
// component: "/" and NUL replaced, "." and ".." and "" given a visible prefix, and names longer than
// maxNameLen shortened with a hash of the original so two long names sharing a prefix stay distinct.
func sanitizeName(name string) string {
	if strings.ContainsAny(name, "/\x00") {
		name = strings.ReplaceAll(name, "/", slashReplacement)
		name = strings.ReplaceAll(name, "\x00", nulReplacement)
	}
	switch name {
	case "":
		return "_"
	case ".", "..":
		return "_" + name
	}
	if len(name) > maxNameLen {
		name = shortenName(name, maxNameLen)
	}
	return name
}

// shortenName cuts name to at most limit bytes: a prefix (cut on a rune boundary), "~", 12 hex digits
// of the sha256 of the whole name, and the extension when it is short, so "result.vtk" files stay
// recognisable by type.
func shortenName(name string, limit int) string {
	sum := sha256.Sum256([]byte(name))
	tag := "~" + hex.EncodeToString(sum[:6])
	ext := path.Ext(name)
	if len(ext) > 16 || strings.ContainsRune(ext, ' ') {
		ext = ""
	}
	keep := limit - len(tag) - len(ext)
	stem := name[:len(name)-len(ext)]
	if keep > len(stem) {
		keep = len(stem)
	}
	for keep > 0 && !utf8.RuneStart(stem[keep]) {
		keep--
	}
	return stem[:keep] + tag + ext
}

// withSuffix inserts "~suffix" before the extension of name (keeping the result within maxNameLen),
// the deterministic way a second file mapping to a taken name gets its own: "out.vtk" -> "out~x1y2.vtk".
func withSuffix(name, suffix string) string {
	ext := path.Ext(name)
	if ext == name || len(ext) > 16 { // ".bashrc" has no stem; very long "extensions" are not ones
		ext = ""
	}
	stem := name[:len(name)-len(ext)]
	tag := "~" + sanitizeName(suffix)
	out := stem + tag + ext
	if len(out) > maxNameLen {
		out = shortenName(stem, maxNameLen-len(tag)-len(ext)) + tag + ext
	}
	if len(out) > maxNameLen { // a pathological suffix: give up on the extension
		out = shortenName(out, maxNameLen)
	}
	return out
}

// validJobID says whether s can be a Rescale job id: short, letters and digits (the API's ids are 5 to 6
// characters; a little slack for other platforms). Anything else is never sent to the platform, so
// a lookup of "..", "@x" or a long name in jobs/ fails locally.
func validJobID(s string) bool {
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

// byNameEntry is the name of a job's by-name/ symlink: "<job name> (<id>)". The job name is
// sanitised and shortened so the whole fits in maxNameLen; the id keeps entries unique.
func byNameEntry(name, id string) string {
	tail := " (" + id + ")"
	if strings.TrimSpace(name) == "" {
		name = "unnamed"
	}
	name = strings.ReplaceAll(name, "/", slashReplacement)
	name = strings.ReplaceAll(name, "\x00", nulReplacement)
	if len(name)+len(tail) > maxNameLen {
		name = shortenName(name, maxNameLen-len(tail))
	}
	return name + tail
}
