package remote

import (
	"context"
	"net/http"
	"net/url"
)

// searchQuery is the query of a file list: `search=` limits it to files containing text (the platform
// decides which fields and whether case matters; callers filter exactly themselves).
func searchQuery(search string) url.Values {
	q := url.Values{}
	if search != "" {
		q.Set("search", search)
	}
	return q
}

func keepAvailable(f *File) bool { return f.available() }

// JobFiles lists the output files of all of a job's runs that are uploaded and not deleted.
func (c *Client) JobFiles(ctx context.Context, jobID, search string) ([]File, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return nil, err
	}
	return listAll(ctx, c, "/api/v2/jobs/"+id+"/files/", searchQuery(search), keepAvailable)
}

// RunFiles lists one run's files that are uploaded and not deleted.
func (c *Client) RunFiles(ctx context.Context, jobID, runID, search string) ([]File, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return nil, err
	}
	run, err := segment("run id", runID)
	if err != nil {
		return nil, err
	}
	return listAll(ctx, c, "/api/v2/jobs/"+id+"/runs/"+run+"/files/", searchQuery(search), keepAvailable)
}

// LibraryFiles lists the user's own files (GET /api/v2/files/) that are uploaded and not deleted.
func (c *Client) LibraryFiles(ctx context.Context, search string) ([]File, error) {
	return listAll(ctx, c, "/api/v2/files/", searchQuery(search), keepAvailable)
}

// GetFile is one file's metadata, whatever its state.
func (c *Client) GetFile(ctx context.Context, fileID string) (File, error) {
	id, err := segment("file id", fileID)
	if err != nil {
		return File{}, err
	}
	var f File
	err = c.getJSON(ctx, "/api/v2/files/"+id+"/", nil, &f)
	return f, err
}

// DeleteFile deletes a file of the user's library. A DELETE is retried on 5xx; when an earlier attempt
// did delete the file, the retry answers 404, which is reported as is.
func (c *Client) DeleteFile(ctx context.Context, fileID string) error {
	id, err := segment("file id", fileID)
	if err != nil {
		return err
	}
	return c.doJSON(ctx, &request{method: http.MethodDelete, path: "/api/v2/files/" + id + "/"}, nil)
}
