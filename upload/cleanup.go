package upload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// Clean-up records. An upload can leave things on the platform that rescalefs must delete after the
// upload itself is over:
//
//   - a withdrawn upload (cancelled: removed or replaced in uploads/) whose publishing request was
//     out: the request may publish it after the cancel has returned (a cancel waits at most
//     cancelWait for it), or after a crash, when nobody knows the answer;
//   - the files a withdrawn upload superseded (stale publications under names its file left): the
//     file is gone, so they are stale with nothing to replace them;
//   - the files a published upload superseded whose deletion failed.
//
// Each stays journaled (its record, Withdrawn or done with Supersedes left, its data removed) until
// all of it is deleted, and is retried with the upload backoff (in this engine's life and after a
// restart): no stale copy left behind by rescalefs stays on the platform for good.
//
//   - the object of a withdrawn direct upload (completed, then never registered, or its registration
//     deleted): its key is ours, so it is deleted from the storage, after the files that may hold it.
//   - the objects an upload stopped using (Dropped: a stale publication held each, and the upload
//     sent a new object), after the stale files.
//
// What is deleted: file ids the engine got from the platform for this upload (a publication whose
// answer came in after the cancel, its stale publications under names its file left), and, for a
// request whose answer never came, what findPublished matches under the names it carried (same size
// and sha512, uploaded after the upload was queued) that holds the object the upload stored (ours):
// never a file rescalefs did not publish, nor the current version of a file. A small upload's lost
// publication cannot be told from another tool's upload of the same file (the platform chooses where
// it stores it): it is left in the library and logged, since deleting the other tool's file would
// lose it.

// errWithdrawn ends an attempt whose upload a cancel has withdrawn: nothing more is journaled or sent.
var errWithdrawn = errors.New("upload: withdrawn")

// cancelWait bounds a cancel's wait on the network: for the upload's running attempt to stop, then
// for the abort of its multipart upload. A publishing request is not cut by a cancel (a request cut
// on its way may publish the file unknown to anyone), and its answer can take as long as the client's
// retries (about a minute) when the platform stalls: a cancel stops waiting after cancelWait and
// leaves the outcome (and an abort not answered in time) to the upload's clean-up.
const cancelWait = 3 * time.Second

// isCleanup reports a record kept only to delete what its upload left on the platform.
func (r *record) isCleanup() bool {
	return r.Withdrawn || r.State == StateDone && r.owesDeletions()
}

// owesDeletions reports library files r's publication replaces, or objects it stopped using, still to
// be deleted.
func (r *record) owesDeletions() bool { return len(r.Supersedes) > 0 || len(r.Dropped) > 0 }

// dropObject books r's completed object in Dropped, to be deleted after the files in Supersedes (a
// stale publication holding it): the upload is about to send a new one and forget this one's key.
func (r *record) dropObject() {
	if r.ObjectDone && r.ObjectKey != "" {
		addObjects(r, []storedObject{{Bucket: r.Bucket, Key: r.ObjectKey}})
	}
}

// addObjects adds objs to r's Dropped, and reports whether any was not there yet.
func addObjects(r *record, objs []storedObject) bool {
	var added bool
	r.Dropped, added = appendMissing(r.Dropped, objs...)
	return added
}

// addSupersedes books library files ("" left out) for r's publication to supersede, once each.
func addSupersedes(r *record, fileIDs ...string) bool {
	var added bool
	r.Supersedes, added = appendMissing(r.Supersedes, slices.DeleteFunc(slices.Clone(fileIDs), func(f string) bool { return f == "" })...)
	return added
}

// appendMissing appends the items of add that list does not hold yet, and reports whether it added any.
func appendMissing[T comparable](list []T, add ...T) ([]T, bool) {
	added := false
	for _, x := range add {
		if !slices.Contains(list, x) {
			list, added = append(list, x), true
		}
	}
	return list, added
}

// renamedDone reports a record published (done) and renamed before the fs layer took the
// confirmation: to publish again under its new name.
func (r *record) renamedDone() bool {
	return r.State == StateDone && r.PublishedName != "" && r.Name != r.PublishedName
}

// startCleanup runs the clean-up of u (its record journaled as a clean-up record) in the background,
// after done (the attempt a cancel stopped waiting for; nil when none runs) is closed. counted: the
// cancel's first pass is awaited by CancelsDone. Nothing starts once the engine is closed or before
// Start: the record stays for the next start.
func (e *Engine) startCleanup(u *upload, done <-chan struct{}, counted bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gone[u.id] = u
	if e.closed || e.ctx == nil || u.cleaning {
		return
	}
	u.cleaning = true
	if counted {
		if e.withdrawing++; e.withdrawn == nil {
			e.withdrawn = make(chan struct{})
		}
	}
	e.wg.Add(1)
	go e.cleanup(e.ctx, u, done, counted)
}

// cleanup deletes what u left on the platform, retrying with the upload backoff until all of it is
// gone (then the record is removed) or ctx ends (the record stays for the next start).
func (e *Engine) cleanup(ctx context.Context, u *upload, done <-chan struct{}, counted bool) {
	defer e.wg.Done()
	uncount := func() {
		if counted {
			counted = false
			e.withdrawDone()
		}
	}
	defer uncount()
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
	if err := e.bookLanded(u); err != nil {
		e.log.Error("upload: journal", "upload", u.id, "err", err)
	}
	for n := 1; ; n++ {
		err := e.cleanOnce(ctx, u)
		if err == nil {
			u.jmu.Lock()
			rerr := e.j.remove(u.id)
			e.mu.Lock()
			delete(e.gone, u.id)
			u.cleaning = false
			e.mu.Unlock()
			u.jmu.Unlock()
			if rerr != nil {
				e.log.Error("upload: journal", "upload", u.id, "err", rerr)
			}
			return
		}
		uncount()
		if ctx.Err() != nil {
			return
		}
		wait := e.retryDelay(n)
		e.log.Warn("upload: clean-up on the platform failed, will retry", "upload", u.id, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// bookLanded journals the outcome of the attempt a cancel stopped waiting for: the file its
// publishing request published (to delete), or, when it was answered with a refusal, that nothing is
// left to look for.
func (e *Engine) bookLanded(u *upload) error {
	return e.editCleanup(u, func(r *record) {
		if u.landed != "" {
			if !slices.Contains(r.Supersedes, u.landed) {
				r.Supersedes = append(r.Supersedes, u.landed)
			}
			r.PublishedSent, r.Sent = false, nil
		}
	})
}

// editCleanup changes the clean-up record of u and journals it.
func (e *Engine) editCleanup(u *upload, change func(r *record)) error {
	u.jmu.Lock()
	defer u.jmu.Unlock()
	e.mu.Lock()
	change(&u.rec)
	r := u.rec
	e.mu.Unlock()
	return e.j.save(&r)
}

// cleanOnce makes one pass: abort the multipart upload left (a cancel that did not wait for its
// create), look for a publication whose answer never came, delete every file owed. Each step done is
// journaled, so a restart does not do it again.
func (e *Engine) cleanOnce(ctx context.Context, u *upload) error {
	r := e.snapshotRec(u)
	if r.S3UploadID != "" && !r.ObjectDone {
		actx, cancel := context.WithTimeout(ctx, supersededTimeout)
		err := e.abort(actx, &r)
		cancel()
		if err != nil {
			return fmt.Errorf("abort multipart upload: %w", err)
		}
		if err := e.editCleanup(u, func(r *record) { r.S3UploadID = "" }); err != nil {
			return err
		}
	}
	if r.Withdrawn && r.PublishedSent {
		found, err := e.lookWithdrawn(ctx, &r)
		if err != nil {
			return err
		}
		err = e.editCleanup(u, func(r *record) {
			r.Supersedes, _ = appendMissing(r.Supersedes, found...)
			r.PublishedSent, r.Sent = false, nil
		})
		if err != nil {
			return err
		}
	}
	r = e.snapshotRec(u)
	var errs []error
	for _, id := range r.Supersedes {
		dctx, cancel := context.WithTimeout(ctx, supersededTimeout)
		err := e.c.DeleteFile(dctx, id)
		cancel()
		if err != nil && !errors.Is(err, remote.ErrNotFound) {
			errs = append(errs, fmt.Errorf("delete %s: %w", id, err))
			continue
		}
		e.log.Info("upload: deleted a publication rescalefs left behind", "upload", u.id, "name", r.Name, "file", id,
			"withdrawn", r.Withdrawn)
		if err := e.editCleanup(u, func(r *record) {
			r.Supersedes = slices.DeleteFunc(r.Supersedes, func(s string) bool { return s == id })
		}); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// The objects the upload stopped using, which the stale files just deleted held: theirs alone (the
	// keys are ours), so no library file holds them now.
	for _, o := range r.Dropped {
		dctx, cancel := context.WithTimeout(ctx, supersededTimeout)
		err := e.deleteStored(dctx, o.Bucket, o.Key)
		cancel()
		if err != nil {
			return fmt.Errorf("delete object %s: %w", o.Key, err)
		}
		e.log.Info("upload: deleted a stored object the upload stopped using", "upload", u.id, "name", r.Name, "object", o.Key)
		if err := e.editCleanup(u, func(r *record) {
			r.Dropped = slices.DeleteFunc(r.Dropped, func(d storedObject) bool { return d == o })
		}); err != nil {
			return err
		}
	}
	// The object of a withdrawn direct upload: completed, then never registered, or registered and
	// that publication deleted just above (the platform may not delete the object with its file). It
	// goes last: no library file of ours may be left holding a deleted object.
	r = e.snapshotRec(u)
	if r.Withdrawn && r.ObjectDone && r.ObjectKey != "" {
		dctx, cancel := context.WithTimeout(ctx, supersededTimeout)
		err := e.deleteObject(dctx, &r)
		cancel()
		if err != nil {
			return fmt.Errorf("delete object %s: %w", r.ObjectKey, err)
		}
		e.log.Info("upload: deleted the stored object of a cancelled upload", "upload", u.id, "name", r.Name, "object", r.ObjectKey)
		if err := e.editCleanup(u, func(r *record) { r.ObjectDone, r.S3UploadID = false, "" }); err != nil {
			return err
		}
	}
	return nil
}

// lookWithdrawn finds what the lost publishing requests of withdrawn upload r published, under each
// name they carried: the files findPublished matches that are certainly r's (ours). The others may
// be another tool's uploads of the same file (a small upload's publication cannot be told from
// them): they stay in the library, and the log names them.
func (e *Engine) lookWithdrawn(ctx context.Context, r *record) ([]string, error) {
	names := r.Sent
	if len(names) == 0 {
		names = []string{r.Name}
	}
	var out, unsure []string
	for _, name := range names {
		files, err := e.findPublications(ctx, r, name)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			switch {
			case slices.Contains(out, f.ID) || slices.Contains(unsure, f.ID):
			case ours(r, f):
				out = append(out, f.ID)
			default:
				unsure = append(unsure, f.ID)
				e.keep(f.Name, f.ID, keptRemoved)
			}
		}
	}
	if len(unsure) > 0 {
		e.log.Warn("upload: files like the lost publication of a cancelled upload are in the library; left there: "+
			"nothing tells them from another tool's upload of the same file", "upload", r.ID, "name", r.Name,
			"files", unsure)
	}
	return out, nil
}

// Cleanups is the number of uploads whose leftovers on the platform are still to be deleted
// (withdrawn uploads whose publication may have landed, stale publications not yet deleted).
func (e *Engine) Cleanups() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.gone)
}
