package download

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

// Names under a job's folder that are ours, never an output's.
const (
	partialSuffix = ".rescalefs-partial"
	stateName     = ".rescalefs-done.json"
	reservedStem  = ".rescalefs-" // top-level names starting so are ours (state file, its temp, probes)
)

// Why a relativePath is refused, besides names.Components' reasons (names.ErrEmpty, ...). A refused file
// is skipped with a warning, never renamed: a download folder should hold the platform's names or
// nothing (the mount, which must show every file, rewrites them instead; both apply internal/names' rules).
var (
	errReservedName = errors.New("name reserved for rescalefs's own files")
	errNotLocal     = errors.New("not a local path")
)

// localPath checks an untrusted relativePath from the API and returns it cleaned (no empty or "."
// components), as a slash-separated path relative to the job's folder, or why it cannot be made safe
// (names.Components; ".." is refused, not resolved), or is a name of ours.
func localPath(rel string) (string, error) {
	out, err := names.Components(rel)
	if err != nil {
		return "", err
	}
	last := out[len(out)-1]
	if strings.HasSuffix(last, partialSuffix) || len(out) == 1 && strings.HasPrefix(last, reservedStem) {
		return "", errReservedName
	}
	p := strings.Join(out, "/")
	if !filepath.IsLocal(filepath.FromSlash(p)) { // belt and braces: the checks above imply it on Unix
		return "", errNotLocal
	}
	return p, nil
}

// item is one file to download: the API's file and where it goes under the job's folder.
type item struct {
	f   remote.File
	rel string // slash-separated, relative to the job's folder, safe (see localPath)
}

// skipped is a file left out because its path could not be made safe.
type skipped struct {
	id, rel string
	err     error
}

// plan keeps the files whose name contains query, gives each a safe local path, and settles clashes the
// way the mount does (fs/tree.go), so the download folder shows the names `ls` of the mount shows: when
// two files map to one path, or a file's path is also a folder of another, folders keep their names and
// among files of one path the newest (then the smallest id) keeps it; the others get "~<id>" before
// their extension.
func plan(files []remote.File, query string) ([]item, []skipped) {
	var items []item
	var skips []skipped
	seen := make(map[string]bool, len(files))
	for _, f := range files {
		if !f.IsUploaded || f.IsDeleted || seen[f.ID] {
			continue // not a real output, or listed twice (pages shifting under a paged listing)
		}
		seen[f.ID] = true
		rel, err := localPath(f.RelativePath)
		if err != nil {
			skips = append(skips, skipped{id: f.ID, rel: f.RelativePath, err: err})
			continue
		}
		if query != "" && !strings.Contains(path.Base(rel), query) && !strings.Contains(f.Name, query) {
			continue
		}
		items = append(items, item{f: f, rel: rel})
	}
	slices.SortFunc(items, func(a, b item) int {
		return names.CompareClaims(names.Claim{Path: a.rel, Uploaded: a.f.DateUploaded.Time, ID: a.f.ID},
			names.Claim{Path: b.rel, Uploaded: b.f.DateUploaded.Time, ID: b.f.ID})
	})
	taken := map[string]bool{} // folders first: every proper prefix of a path is a folder
	for _, it := range items {
		for d := path.Dir(it.rel); d != "."; d = path.Dir(d) {
			taken[d] = true
		}
	}
	out := items[:0]
	for _, it := range items {
		if taken[it.rel] {
			orig := it.rel
			dir, name := path.Split(orig)
			if !names.ValidID(it.f.ID) { // the id becomes part of a name: it must be a plain one
				skips = append(skips, skipped{id: it.f.ID, rel: orig, err: errors.New("duplicate path")})
				continue
			}
			it.rel = dir + names.WithSuffix(name, it.f.ID)
			for i := 2; taken[it.rel]; i++ {
				it.rel = dir + names.WithSuffix(name, it.f.ID+"-"+strconv.Itoa(i))
			}
		}
		taken[it.rel] = true
		out = append(out, it)
	}
	return out, skips
}

// partialPath is where rel is written until verified: next to it, so the final rename stays within one
// folder (and one file system). A name too long for the suffix gets a hash of itself instead.
func partialPath(rel string) string {
	dir, name := path.Split(rel)
	if len(name)+len(partialSuffix) > names.MaxLen {
		sum := sha256.Sum256([]byte(name))
		name = "." + hex.EncodeToString(sum[:16])
	}
	return dir + name + partialSuffix
}
