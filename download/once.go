package download

import (
	"context"
	"errors"
	"fmt"

	"github.com/rescalefs/rescalefs/remote"
)

// FetchJobs downloads the outputs of completed jobs into Dir/<jobId>/ once, through the cache and its
// fetcher as the mount reads (ranged parallel reads, sha512 checked), then returns: what
// `rescalefs submit --wait --download DIR` does when its jobs end. Query filters names as for the
// background Downloader; files already downloaded whole by an earlier run are not fetched again.
func FetchJobs(ctx context.Context, opts Options, jobIDs ...string) error {
	d, err := New(opts)
	if err != nil {
		return err
	}
	if err := d.openDir(); err != nil {
		return err
	}
	defer d.root.Close()
	var errs []error
	for _, id := range jobIDs {
		st, err := d.api.JobStatuses(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", id, err))
			continue
		}
		j := &job{id: id, state: stateQueued}
		for _, s := range st {
			if s.Status == remote.StatusCompleted {
				j.completedAt = s.StatusDate.Time
				break
			}
		}
		j.succeeded = st.Succeeded()
		d.mu.Lock()
		d.jobs[id] = j
		d.mu.Unlock()
		if err := d.downloadJob(ctx, j); err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
