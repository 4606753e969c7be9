package fs

import (
	"context"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/internal/names"
	"github.com/rescalefs/rescalefs/remote"
)

// files/ is the user's library (GET /api/v2/files/), flat, read-only here. Library names are not
// unique: a name uploaded twice shows once, as its newest upload. The list is refetched at most once per
// poll interval, when looked at.

// buildLibrary makes the flat tree of files/: sanitised names, newest upload wins per name (ties: the
// larger id, so the answer does not depend on the API's order).
func buildLibrary(files []remote.File) (*node, []treeNote) {
	root := newDir("")
	var notes []treeNote
	for i := range files {
		f := &files[i]
		if !f.IsUploaded || f.IsDeleted {
			continue
		}
		name := names.Sanitize(f.Name)
		if f.Name == "" {
			name = "file-" + f.ID
		}
		if name != f.Name {
			notes = append(notes, treeNote{FileID: f.ID, Original: f.Name, Name: name, Reason: "unsafe name"})
		}
		if old := root.children[name]; old != nil {
			if c := f.DateUploaded.Compare(old.file.DateUploaded.Time); c < 0 || c == 0 && f.ID < old.file.ID {
				continue
			}
		}
		root.children[name] = &node{name: name, file: f, mtime: f.DateUploaded.Time, bytes: f.DecryptedSize}
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
		c = startFlight(f.ctx, func(ctx context.Context) (*node, error) {
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
