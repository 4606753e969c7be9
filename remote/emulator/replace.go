package emulator

import (
	"fmt"
	"io"
)

// ReplaceFileContent gives an existing file new content, and so a new size and checksum, under the same
// id and object key: a test hook for a file whose size changes between a listing and a read. The real
// platform's outputs never change once uploaded; a misbehaving platform, or a proxy's stale cache, can
// still make them look as if they did. size is checked against content unless negative.
func (e *Emulator) ReplaceFileContent(fileID string, content io.Reader, size int64) (FileInfo, error) {
	e.mu.RLock()
	old, ok := e.st.files[fileID]
	var prev fileRecord
	if ok {
		prev = *old
	}
	e.mu.RUnlock()
	if !ok || prev.Deleted {
		return FileInfo{}, fmt.Errorf("replace %s: %w", fileID, ErrNotFound)
	}
	f, o, err := e.stored(prev.ObjectKey, content, size)
	if err != nil {
		return FileInfo{}, fmt.Errorf("replace %s: %w", fileID, err)
	}
	f.ID, f.Name, f.RelativePath, f.JobID, f.RunID, f.TypeID = prev.ID, prev.Name, prev.RelativePath, prev.JobID, prev.RunID, prev.TypeID
	f.Uploaded, f.Owner = prev.Uploaded, prev.Owner
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.commitLocked(record{Object: o}, record{File: f}); err != nil {
		return FileInfo{}, err
	}
	return fileInfo(f), nil
}
