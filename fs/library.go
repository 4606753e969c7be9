package fs

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

// files/ is the user's library (GET /api/v2/files/), flat, read-only here. Library names are not
// unique (uploads/a/x and uploads/b/x are both published as x): a name uploaded more than once shows as
// its newest upload under the name, and every older one beside it as name~<file id>, the clash rule of
// jobs/ (names.CompareClaims, WithSuffix), so every published file can be reached. The list is
// refetched at most once per poll interval, when looked at.

// buildLibrary makes the flat tree of files/: sanitised names, the newest upload keeps a name (ties:
// the smaller id, so the answer does not depend on the API's order), the others take their id.
func buildLibrary(files []remote.File) (*node, []treeNote) {
	root := newDir("")
	var notes []treeNote
	type item struct {
		f    *remote.File
		name string
	}
	items := make([]item, 0, len(files))
	seen := make(map[string]bool, len(files))
	for i := range files {
		f := &files[i]
		if !f.IsUploaded || f.IsDeleted || seen[f.ID] {
			continue
		}
		seen[f.ID] = true
		name := libraryName(f.Name, f.ID)
		if name != f.Name {
			notes = append(notes, treeNote{FileID: f.ID, Original: f.Name, Name: name, Reason: "unsafe name"})
		}
		items = append(items, item{f: f, name: name})
	}
	slices.SortFunc(items, func(a, b item) int {
		return names.CompareClaims(names.Claim{Path: a.name, Uploaded: a.f.DateUploaded.Time, ID: a.f.ID},
			names.Claim{Path: b.name, Uploaded: b.f.DateUploaded.Time, ID: b.f.ID})
	})
	for _, it := range items {
		name := it.name
		for i := 2; root.children[name] != nil; i++ {
			if i == 2 {
				name = names.WithSuffix(it.name, it.f.ID)
			} else {
				name = names.WithSuffix(it.name, it.f.ID+"-"+strconv.Itoa(i))
			}
		}
		root.children[name] = &node{name: name, file: it.f, mtime: it.f.DateUploaded.Time, bytes: it.f.DecryptedSize}
	}
	root.finish()
	return root, notes
}

// library caches the files/ tree.
type library struct {
	mu      sync.Mutex // protects the fields below; never held across a platform call
	root    *node
	fetched time.Time
	call    *flight[*node]
}

// libraryFiles returns the files/ tree, refetched when older than a poll interval; a failed refetch
// serves the previous tree.
func (f *fsys) libraryFiles(ctx context.Context) (*node, error) {
	l := &f.lib
	l.mu.Lock()
	if l.root != nil && f.now().Sub(l.fetched) < f.opts.Poll {
		r := l.root
		l.mu.Unlock()
		return r, nil
	}
	c := l.call
	if c == nil {
		c = startFlight(&f.calls, func(ctx context.Context) (*node, error) {
			files, err := f.client.LibraryFiles(ctx, "")
			if err != nil {
				return nil, err
			}
			root, notes := buildLibrary(files)
			f.logNotes("files", notes)
			return root, nil
		}, func(root *node, err error) {
			l.mu.Lock()
			if err == nil {
				l.root, l.fetched = root, f.now()
			}
			l.call = nil
			l.mu.Unlock()
		})
		l.call = c
	}
	stale := l.root
	l.mu.Unlock()
	root, err := c.wait(ctx)
	if err != nil {
		if stale != nil && ctx.Err() == nil {
			f.logErr("refresh the file library (serving the previous list)", err)
			return stale, nil
		}
		return nil, err
	}
	return root, nil
}

// libraryName is what files/ names a library file called name (its id when it has no name), before
// any suffix that tells it from another file of the same name.
func libraryName(name, id string) string {
	if name == "" {
		return "file-" + id
	}
	return names.Sanitize(name)
}
