package upload

import (
	"slices"
	"time"
)

// Kept files. A publishing request whose answer was lost (a crash of the mount, a cut connection)
// is looked for in the library, and what it published is deleted when its upload was removed or
// renamed since. A small upload's request carries only the name and the bytes, so its publication
// cannot be told from another tool's upload of the same file: rescalefs leaves such a file in the
// library rather than risk deleting someone else's. Those files are Kept: the log names them, and
// the status shows them (Engine.Kept), so the user can delete the ones that are not wanted. They are
// shown for this engine's life: the next start does not look for them again (their records are
// gone), and they stay in the library as any other file.

// Kept is a file left in the library that may be the publication of an upload removed or renamed
// since, or another tool's upload of the same bytes.
type Kept struct {
	Name   string    `json:"name"`   // the library file's name (what files/ shows it as)
	FileID string    `json:"fileId"` // the library file
	Why    string    `json:"why"`    // what rescalefs could not tell, in words
	Time   time.Time `json:"time"`   // when it was left
}

// Reasons of Kept files.
const (
	keptRemoved = "may be the publication of a file removed from uploads/ (its answer was lost), " +
		"or another tool's upload of the same bytes"
	keptRenamed = "may be the publication under a name its file left in uploads/ (its answer was lost), " +
		"or another tool's upload of the same bytes"
)

// keepLocked books a file left in the library (once per file). e.mu held.
func (e *Engine) keepLocked(name, fileID, why string) {
	if fileID == "" || slices.ContainsFunc(e.kept, func(k Kept) bool { return k.FileID == fileID }) {
		return
	}
	e.kept = append(e.kept, Kept{Name: name, FileID: fileID, Why: why, Time: e.now()})
}

func (e *Engine) keep(name, fileID, why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.keepLocked(name, fileID, why)
}

// Kept lists the files left in the library since this engine started that may be publications of
// uploads removed or renamed since (see above), oldest first.
func (e *Engine) Kept() []Kept {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.kept)
}
