package fs

import (
	"path"

	"github.com/rescalefs/rescalefs/upload"
)

// KeptFile is a file the upload engine left in the library after a lost answer (upload.Kept: it
// may be the publication of a file removed or renamed in uploads/, or another tool's upload of the
// same bytes), with where files/ shows it: .rescalefs/status lists them for the engine's life, so
// that the user can delete the unwanted ones on the platform.
type KeptFile struct {
	upload.Kept
	// Path is where the mount shows it: files/<name>, or files/<name>~<file id> beside a newer file
	// of the same name (as the library was last listed; files/<name> before it is listed).
	Path string `json:"path"`
}

// keptFiles adds to the engine's kept files their paths in files/, from the library tree as last
// fetched (no request).
func (f *fsys) keptFiles(kept []upload.Kept) []KeptFile {
	if len(kept) == 0 {
		return nil
	}
	f.lib.mu.Lock()
	root := f.lib.root // a fetched tree is never changed, only replaced
	f.lib.mu.Unlock()
	shown := map[string]string{} // file id -> name in files/
	if root != nil {
		for name, n := range root.children {
			if n.file != nil {
				shown[n.file.ID] = name
			}
		}
	}
	out := make([]KeptFile, 0, len(kept))
	for _, k := range kept {
		name, ok := shown[k.FileID]
		if !ok {
			name = libraryName(k.Name, k.FileID)
		}
		out = append(out, KeptFile{Kept: k, Path: path.Join("files", name)})
	}
	return out
}
