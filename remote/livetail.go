package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// TailRange reads bytes [off, off+n) of a live file (n < 0: to its end) with a Range header, so a
// reader following a growing log asks only for what is new. Whether the platform honours Range on
// the tail endpoint is not documented [I]: ranged reports whether it did. When it does not (a 200 with
// the whole file), TailRange skips to off itself and the caller learns to pace whole-file reads. A
// range starting at or past the end (416) is no new bytes: (nil, true, nil).
func (c *Client) TailRange(ctx context.Context, jobID, runID, path string, off, n int64) (b []byte, ranged bool, err error) {
	p, err := tailPath(jobID, runID, path)
	if err != nil {
		return nil, false, err
	}
	if off < 0 || n == 0 {
		return nil, false, fmt.Errorf("tail %s at %d+%d: %w: bad range", path, off, n, ErrBadRequest)
	}
	rng := fmt.Sprintf("bytes=%d-", off)
	if n > 0 {
		rng = fmt.Sprintf("bytes=%d-%d", off, off+n-1)
	}
	r := &request{method: http.MethodGet, path: p, header: http.Header{"Accept": {"*/*"}, "Range": {rng}}}
	err = c.do(ctx, r, func(resp *http.Response) error {
		body := io.Reader(resp.Body)
		switch resp.StatusCode {
		case http.StatusPartialContent:
			cs, _, _, err := parseContentRange(resp.Header.Get("Content-Range"))
			if err != nil || cs != off {
				return fmt.Errorf("tail %s: %w: %q for %s", path, ErrBadRange, resp.Header.Get("Content-Range"), rng)
			}
			ranged = true
		case http.StatusOK:
			// Range ignored: the whole file. Skip to off (within the tail bound) and keep what was asked.
			if off > maxTail {
				return fmt.Errorf("tail %s: %w: Range ignored and offset %d beyond %d", path, ErrBadRange, off, maxTail)
			}
			if _, err := io.CopyN(io.Discard, body, off); err != nil {
				if errors.Is(err, io.EOF) {
					return nil // the file is shorter than off: nothing new
				}
				return &retryableBody{shortBodyErr("tail "+path+": ", err)}
			}
		default:
			return fmt.Errorf("tail %s: %w: unexpected status %d", path, ErrBadRange, resp.StatusCode)
		}
		if n > 0 {
			body = io.LimitReader(body, n)
		}
		got, err := io.ReadAll(io.LimitReader(body, maxTail+1))
		if err != nil {
			return &retryableBody{shortBodyErr("tail "+path+": ", err)}
		}
		if len(got) > maxTail {
			return fmt.Errorf("tail %s: %w: more than %d bytes", path, ErrLongBody, maxTail)
		}
		b = got
		return nil
	})
	if errors.Is(err, ErrRange) {
		return nil, true, nil
	}
	return b, ranged, err
}
