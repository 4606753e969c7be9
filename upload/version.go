package upload

import (
	"fmt"
	"path/filepath"
	"strings"
)

// A version of a file of uploads/ confirmed while a newer version of the same file is on its way
// (the file was written again before the old version was published) is a version the user replaced,
// perhaps under a name the user has left since (the file renamed while written again). uploads/ says
// one file, so files/ must end with one: the newer version supersedes the old one's publication. It
// is booked with the newer version (handOver): in its staging record while it is written (Supersedes,
// and the object of ours the publication holds in Dropped), carried into its upload when it is queued
// (EnqueueVersion), deleted once it is published; never before, since until then the old version may
// be the only copy on the platform. Nor is the old version published again under a name its file took
// since (republish): the newer version carries the file's name. Before, the old version's publication
// stayed beside the new one: under the name the user had left, when the file was renamed meanwhile.

// indexStaging reads the staging records into replacing (New, before load).
func (e *Engine) indexStaging() {
	paths, _ := filepath.Glob(filepath.Join(e.staging, "*"+stagingExt))
	e.stagingMu.Lock()
	defer e.stagingMu.Unlock()
	for _, p := range paths {
		if r, err := readStagingRecord(p); err == nil {
			e.indexLocked(strings.TrimSuffix(p, stagingExt), r.Replaces)
		}
	}
}

// indexLocked books that staging file p replaces upload id ("" none). stagingMu held.
func (e *Engine) indexLocked(p, id string) {
	if old, ok := e.replacing[p]; ok {
		delete(e.replacing, p)
		if e.replacedBy[old] == p {
			delete(e.replacedBy, old)
		}
	}
	if id != "" {
		e.replacing[p], e.replacedBy[id] = id, p
	}
}

// replacedByLocked returns the staging file whose record says it is a new version of upload id, and
// that record ("" and nil: none). An entry whose record says otherwise (or is gone) is dropped.
// stagingMu held.
func (e *Engine) replacedByLocked(id string) (string, *StagingRecord) {
	p, ok := e.replacedBy[id]
	if !ok {
		return "", nil
	}
	r, err := readStagingRecord(p + stagingExt)
	if err != nil || r.Replaces != id {
		e.indexLocked(p, "")
		return "", nil
	}
	return p, r
}

// replacedLocked returns the pending upload queued as a new version of upload id (nil: none). e.mu held.
func (e *Engine) replacedLocked(id string) *upload {
	nid, ok := e.versions[id]
	if !ok {
		return nil
	}
	nu := e.ups[nid]
	if nu == nil || nu.rec.Replaces != id || nu.cancelled {
		delete(e.versions, id)
		return nil
	}
	return nu
}

// forgetVersionLocked drops r's entry of versions once r has left ups. e.mu held.
func (e *Engine) forgetVersionLocked(r record) {
	if r.Replaces != "" && e.versions[r.Replaces] == r.ID {
		delete(e.versions, r.Replaces)
	}
}

// replaced reports whether a newer version of upload id is on its way: in staging, or queued.
func (e *Engine) replaced(id string) bool {
	e.stagingMu.Lock()
	p, _ := e.replacedByLocked(id)
	e.stagingMu.Unlock()
	if p != "" {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.replacedLocked(id) != nil
}

// handOver books publication fileID of upload r (done) with the newer version of its file, if one is
// on its way, and reports whether one is. A publication only taken for r's (PublishedUnsure) is not
// booked: it may be another tool's file. The object r stored (a direct upload's, ours) goes with it.
func (e *Engine) handOver(r *record, fileID string) (bool, error) {
	var objs []storedObject
	if r.ObjectDone && r.ObjectKey != "" {
		objs = append(objs, storedObject{Bucket: r.Bucket, Key: r.ObjectKey})
	}
	book := fileID != "" && !r.PublishedUnsure
	e.stagingMu.Lock()
	defer e.stagingMu.Unlock()
	if p, sr := e.replacedByLocked(r.ID); p != "" {
		if !book {
			return true, nil
		}
		var booked, held bool
		sr.Supersedes, booked = appendMissing(sr.Supersedes, fileID)
		sr.Dropped, held = appendMissing(sr.Dropped, objs...)
		if !booked && !held {
			return true, nil
		}
		if err := writeStagingRecord(p, *sr); err != nil {
			return true, fmt.Errorf("upload: book %s with the new version of upload %s: %w", fileID, r.ID, err)
		}
		e.log.Info("upload: published while a new version of its file was written; deleted once that is published",
			"upload", r.ID, "name", r.Name, "file", fileID)
		return true, nil
	}
	e.mu.Lock()
	nu := e.replacedLocked(r.ID)
	e.mu.Unlock()
	if nu == nil {
		return false, nil
	}
	if !book {
		return true, nil
	}
	err := e.editRecord(nu.id, false, func(u *upload) {
		addSupersedes(&u.rec, fileID)
		addObjects(&u.rec, objs)
	})
	if err != nil {
		return true, fmt.Errorf("upload: book %s with the new version %s of upload %s: %w", fileID, nu.id, r.ID, err)
	}
	return true, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
