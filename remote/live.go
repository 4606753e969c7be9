package remote

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxTail bounds a raw tail read into memory: a live log can grow large, and a mount that wants more
// reads the file once the run has completed.
const maxTail = 256 << 20

// DirectoryContents lists the live working directory of a running job's run (a bare JSON array). It
// fails once the run is over; the outputs are then under JobFiles.
func (c *Client) DirectoryContents(ctx context.Context, jobID, runID string) ([]LiveFile, error) {
	base, err := runPath(jobID, runID)
	if err != nil {
		return nil, err
	}
	var out []LiveFile
	err = c.getJSON(ctx, base+"directory-contents/", nil, &out)
	return out, err
}

// Tail reads the raw bytes of a live file of a running run; path is relative to the run's working
// directory, as DirectoryContents gives it.
func (c *Client) Tail(ctx context.Context, jobID, runID, path string) ([]byte, error) {
	p, err := tailPath(jobID, runID, path)
	if err != nil {
		return nil, err
	}
	var out []byte
	r := &request{method: http.MethodGet, path: p, header: http.Header{"Accept": {"*/*"}}}
	err = c.do(ctx, r, func(resp *http.Response) error {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxTail+1))
		if err != nil {
			return &retryableBody{shortBodyErr("tail "+path+": ", err)}
		}
		if len(b) > maxTail {
			return fmt.Errorf("tail %s: %w: more than %d bytes", path, ErrLongBody, maxTail)
		}
		out = b
		return nil
	})
	return out, err
}

// TailLines reads the last n lines of a live file (each line keeps its newline, as the platform
// sends them).
func (c *Client) TailLines(ctx context.Context, jobID, runID, path string, n int) ([]string, error) {
	p, err := tailPath(jobID, runID, path)
	if err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("tail %s: %w: %d lines", path, ErrBadRequest, n)
	}
	var out struct {
		FileType string   `json:"fileType"`
		Lines    []string `json:"lines"`
	}
	err = c.getJSON(ctx, p, url.Values{"lines": {fmt.Sprint(n)}}, &out)
	return out.Lines, err
}

func runPath(jobID, runID string) (string, error) {
	id, err := segment("job id", jobID)
	if err != nil {
		return "", err
	}
	run, err := segment("run id", runID)
	if err != nil {
		return "", err
	}
	return "/api/v2/jobs/" + id + "/runs/" + run + "/", nil
}

// tailPath builds .../tail/{path}. The path comes from the platform and is not trusted: it must stay
// below the run's directory, so empty, "." and ".." segments are refused.
func tailPath(jobID, runID, path string) (string, error) {
	base, err := runPath(jobID, runID)
	if err != nil {
		return "", err
	}
	path = strings.TrimPrefix(path, "/")
	if path == "" {
		return "", fmt.Errorf("tail: %w: empty path", ErrBadRequest)
	}
	for _, s := range strings.Split(path, "/") {
		if s == "" || s == "." || s == ".." {
			return "", fmt.Errorf("tail %q: %w: bad path", path, ErrBadRequest)
		}
	}
	return base + "tail/" + path, nil
}
