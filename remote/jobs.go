package remote

import (
	"context"
	"net/url"
	"slices"
	"sort"
)

// ListJobs lists every job the key owns or that is shared with it, following all pages. filter adds
// query parameters the platform understands (state=completed, ordering=-dateInserted, ...); nil for all.
func (c *Client) ListJobs(ctx context.Context, filter url.Values) ([]Job, error) {
	return listAll[Job](ctx, c, "/api/v2/jobs/", filter, nil)
}

// GetJob is one job's detail. The detail carries no jobStatus: use JobStatuses.
func (c *Client) GetJob(ctx context.Context, jobID string) (Job, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return Job{}, err
	}
	var j Job
	err = c.getJSON(ctx, "/api/v2/jobs/"+id+"/", nil, &j)
	return j, err
}

// JobStatuses is a job's status history, newest first (sorted again by date in case a server does not
// keep that order; a history with an undated entry is kept in the server's order, as an undated entry
// cannot be placed).
func (c *Client) JobStatuses(ctx context.Context, jobID string) (Statuses, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return nil, err
	}
	s, err := listAll[Status](ctx, c, "/api/v2/jobs/"+id+"/statuses/", nil, nil)
	if err != nil {
		return nil, err
	}
	// "Undated is unordered" is not a strict weak order: mixed into one sort it scrambles the dated ones.
	if !slices.ContainsFunc(s, func(st Status) bool { return st.StatusDate.IsZero() }) {
		sort.SliceStable(s, func(i, j int) bool { return s[i].StatusDate.After(s[j].StatusDate.Time) })
	}
	return Statuses(s), nil
}

// JobRuns lists a job's runs.
func (c *Client) JobRuns(ctx context.Context, jobID string) ([]Run, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return nil, err
	}
	return listAll[Run](ctx, c, "/api/v2/jobs/"+id+"/runs/", nil, nil)
}
