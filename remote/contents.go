package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// maxRangeSkip is how far into a full (200) answer ReadRange will read and discard to reach its offset
// when a server ignores Range; further than that, failing is cheaper than downloading the file's head.
const maxRangeSkip = 16 << 20

// ReadRange reads plaintext bytes [off, off+len(p)) of a file into p through
// GET /api/v2/files/{id}/contents/ with a Range header. It returns nil only when all len(p) bytes
// arrived: a body cut short is retried (from where it broke), and an answer that does not match the
// request (a short or long body, another Content-Range, a range past EOF) is an error, never data.
// A range reaching past the end of the file fails with ErrShortBody (or ErrRange when off is at or
// past the end): callers ask within DecryptedSize.
func (c *Client) ReadRange(ctx context.Context, fileID string, off int64, p []byte) error {
	return c.ReadRangeVec(ctx, fileID, off, [][]byte{p})
}

// ReadRangeVec is ReadRange for a destination spread over several buffers, filled in order from one
// ranged request: the block cache passes one buffer per block, so a multi-block response lands in the
// blocks without an intermediate copy.
func (c *Client) ReadRangeVec(ctx context.Context, fileID string, off int64, bufs [][]byte) error {
	id, err := segment("file id", fileID)
	if err != nil {
		return err
	}
	if off < 0 {
		return fmt.Errorf("read %s at %d: %w: negative offset", id, off, ErrBadRequest)
	}
	dst := scatter(bufs)
	total := dst.size()
	if total == 0 {
		return nil
	}
	done := 0 // bytes of dst already filled, kept across attempts so a cut body resumes
	r := &request{method: http.MethodGet, path: "/api/v2/files/" + id + "/contents/",
		header: http.Header{"Accept": {"*/*"}},
		// Set per attempt: a resumed attempt asks only for the part still missing.
		prepare: func(req *http.Request) {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off+int64(done), off+int64(total)-1))
		},
	}
	return c.readBudget(ctx, id, func(ctx context.Context) error {
		return c.do(ctx, r, func(resp *http.Response) error {
			start := off + int64(done)
			end := off + int64(total) - 1
			err := readRangeBody(resp, start, end, dst, &done)
			if err != nil {
				return fmt.Errorf("GET %s [%d,%d): %w", resp.Request.URL.Path, start, end+1, err)
			}
			return nil
		})
	})
}

// scatter is a destination made of several buffers filled one after the other.
type scatter [][]byte

func (s scatter) size() int {
	n := 0
	for _, b := range s {
		n += len(b)
	}
	return n
}

// from returns the unfilled rest of the buffer that holds byte i of s (nil when i is past the end).
func (s scatter) from(i int) []byte {
	for _, b := range s {
		if i < len(b) {
			return b[i:]
		}
		i -= len(b)
	}
	return nil
}

// readRangeBody reads the answer to "Range: bytes=start-end" into dst from byte *done on (the bytes still
// missing number end-start+1), counting filled bytes into *done so a retry can resume.
func readRangeBody(resp *http.Response, start, end int64, dst scatter, done *int) error {
	want := end - start + 1
	body := io.Reader(resp.Body)
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cs, ce, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadRange, err)
		}
		if cs != start || ce > end {
			return fmt.Errorf("%w: got %q for bytes=%d-%d", ErrBadRange, resp.Header.Get("Content-Range"), start, end)
		}
		if ce < end {
			if total >= 0 && ce == total-1 {
				return fmt.Errorf("%w: the file has %d bytes", ErrShortBody, total)
			}
			return fmt.Errorf("%w: got %q for bytes=%d-%d", ErrBadRange, resp.Header.Get("Content-Range"), start, end)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != want {
			return lengthError(resp.ContentLength, want)
		}
	case http.StatusOK:
		// The whole file came back: skip to start if that is near, else give up on this server.
		if resp.ContentLength >= 0 && resp.ContentLength < start+want {
			return fmt.Errorf("%w: Range ignored and the file has %d bytes", ErrShortBody, resp.ContentLength)
		}
		if start > maxRangeSkip {
			return fmt.Errorf("%w: Range ignored (200 with the whole file)", ErrBadRange)
		}
		if start > 0 {
			if n, err := io.CopyN(io.Discard, body, start); err != nil {
				if errors.Is(err, io.EOF) {
					return fmt.Errorf("%w: Range ignored and the file has %d bytes", ErrShortBody, n)
				}
				return &retryableBody{shortBodyErr("", err)}
			}
		}
		// Only want bytes are read; the rest of the file is left unread (the connection is dropped).
		body = io.LimitReader(body, want)
	default:
		return fmt.Errorf("%w: unexpected status %d", ErrBadRange, resp.StatusCode)
	}
	for left := want; left > 0; {
		n, err := body.Read(dst.from(*done))
		*done += n
		left -= int64(n)
		if err == io.EOF && left > 0 {
			// A clean EOF before Content-Length would have been ErrUnexpectedEOF; a clean one here is a
			// chunked or close-delimited body that simply ended early: resume it all the same.
			return &retryableBody{fmt.Errorf("%w: body ended %d bytes early", ErrShortBody, left)}
		}
		if err != nil && err != io.EOF {
			return &retryableBody{shortBodyErr("", err)}
		}
	}
	if resp.StatusCode == http.StatusPartialContent {
		var one [1]byte
		// Every byte asked for is in: a body that then ends, breaks or spins (io.ErrNoProgress) is not long.
		if n, _ := io.ReadFull(resp.Body, one[:]); n > 0 {
			return fmt.Errorf("%w: more than %d bytes", ErrLongBody, want)
		}
	}
	return nil
}

func lengthError(got, want int64) error {
	if got < want {
		return fmt.Errorf("%w: Content-Length %d, want %d", ErrShortBody, got, want)
	}
	return fmt.Errorf("%w: Content-Length %d, want %d", ErrLongBody, got, want)
}

// parseContentRange reads "bytes start-end/total" (total may be "*": -1).
func parseContentRange(v string) (start, end, total int64, err error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", v)
	}
	rng, tot, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", v)
	}
	s, e, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", v)
	}
	if start, err = strconv.ParseInt(s, 10, 64); err != nil {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", v)
	}
	if end, err = strconv.ParseInt(e, 10, 64); err != nil || end < start {
		return 0, 0, 0, fmt.Errorf("Content-Range %q", v)
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil || total <= end {
			return 0, 0, 0, fmt.Errorf("Content-Range %q", v)
		}
	}
	return start, end, total, nil
}

// OpenRange streams plaintext bytes [off, off+n) of a file (n < 0: to the end) for callers that copy a
// whole file in one stream. The request is retried until the answer starts; a body cut later fails
// the reader with ErrShortBody (no resume). The caller closes the reader.
func (c *Client) OpenRange(ctx context.Context, fileID string, off, n int64) (io.ReadCloser, error) {
	id, err := segment("file id", fileID)
	if err != nil {
		return nil, err
	}
	if off < 0 || n == 0 {
		return nil, fmt.Errorf("open %s at %d+%d: %w: bad range", id, off, n, ErrBadRequest)
	}
	h := http.Header{"Accept": {"*/*"}}
	if n > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	} else if off > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	pr, pw := io.Pipe()
	ready := make(chan error, 1)
	// do closes the body when accept returns, so accept streams the body into a pipe and returns only
	// when the reader has consumed it (or gave up).
	go func() {
		err := c.do(ctx, &request{method: http.MethodGet, path: "/api/v2/files/" + id + "/contents/", header: h},
			func(resp *http.Response) error {
				want, err := checkStreamStart(resp, off, n)
				if err != nil {
					return err
				}
				ready <- nil
				body := io.Reader(resp.Body)
				if want >= 0 {
					// A 200 for a ranged request carries the whole file: keep only what was asked.
					body = io.LimitReader(body, want)
				}
				// Waiting for our reader is not the platform stalling: pipe writes hold the budget.
				got, err := io.Copy(heldWriter{pw, policyFrom(resp.Request.Context())}, body)
				if err == nil && want >= 0 && got != want {
					err = fmt.Errorf("read %s: %w: %d of %d bytes", id, ErrShortBody, got, want)
				} else if err != nil {
					err = shortBodyErr("read "+id+": ", err)
				}
				pw.CloseWithError(err)
				return nil
			})
		if err != nil {
			select {
			case ready <- err:
			default:
			}
			pw.CloseWithError(err)
		}
	}()
	select {
	case err := <-ready:
		if err != nil {
			return nil, err
		}
		return pr, nil
	case <-ctx.Done():
		pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
}

// checkStreamStart checks the status and headers of an OpenRange answer; want is the expected body
// length, -1 when unknown.
func checkStreamStart(resp *http.Response, off, n int64) (want int64, err error) {
	switch resp.StatusCode {
	case http.StatusPartialContent:
		cs, ce, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || cs != off || (n > 0 && ce > off+n-1) {
			return 0, fmt.Errorf("%w: %q", ErrBadRange, resp.Header.Get("Content-Range"))
		}
		if n > 0 && ce < off+n-1 && (total < 0 || ce != total-1) {
			return 0, fmt.Errorf("%w: %q", ErrBadRange, resp.Header.Get("Content-Range"))
		}
		want = ce - cs + 1
		if n > 0 && want != n {
			return 0, fmt.Errorf("%w: the file has %d bytes", ErrShortBody, total)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != want {
			return 0, lengthError(resp.ContentLength, want)
		}
		return want, nil
	case http.StatusOK:
		if off > 0 {
			return 0, fmt.Errorf("%w: Range ignored (200 with the whole file)", ErrBadRange)
		}
		if n > 0 {
			if resp.ContentLength >= 0 && resp.ContentLength < n {
				return 0, lengthError(resp.ContentLength, n)
			}
			return n, nil // the rest is not read
		}
		return resp.ContentLength, nil
	}
	return 0, fmt.Errorf("%w: unexpected status %d", ErrBadRange, resp.StatusCode)
}

// heldWriter holds a call's budget while a write blocks on a slow consumer.
type heldWriter struct {
	w  io.Writer
	pc *policyCall
}

func (h heldWriter) Write(p []byte) (int, error) {
	release := h.pc.hold()
	defer release()
	return h.w.Write(p)
}
