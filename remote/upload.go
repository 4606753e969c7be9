package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"sync"
)

// expectContinueAbove is the body size from which an upload asks "Expect: 100-continue": a rejected key
// or a 429 then costs no bytes, and a source that cannot be rewound can still be retried.
const expectContinueAbove = 1 << 20

// UploadSmall uploads size bytes from r as a library file named name, in one
// POST /api/v2/files/contents/ (multipart field "file", and "typeId" when typeID > 0). The body is
// streamed with an exact Content-Length (the platform refuses chunked bodies), never buffered. r must
// yield exactly size bytes. The POST is not retried on 5xx (it may have been stored); it is retried on
// 429 and on a refused connection when r is an io.Seeker or when nothing of it was read yet.
func (c *Client) UploadSmall(ctx context.Context, name string, r io.Reader, size int64, typeID int) (File, error) {
	const path = "/api/v2/files/contents/"
	if name == "" {
		return File{}, fmt.Errorf("POST %s: %w: empty file name", path, ErrBadRequest)
	}
	if size < 0 {
		return File{}, fmt.Errorf("POST %s: %w: negative size", path, ErrBadRequest)
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	if typeID > 0 {
		if err := mw.WriteField("typeId", strconv.Itoa(typeID)); err != nil {
			return File{}, err
		}
	}
	if _, err := mw.CreateFormFile("file", name); err != nil {
		return File{}, err
	}
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := mw.Close(); err != nil { // writes the closing boundary only
		return File{}, err
	}
	tail := bytes.Clone(buf.Bytes())

	src := &sharedSource{r: r}
	var start int64
	seeker, canSeek := r.(io.Seeker)
	if canSeek {
		var err error
		if start, err = seeker.Seek(0, io.SeekCurrent); err != nil {
			canSeek = false
		}
	}
	req := &request{
		method: http.MethodPost,
		path:   path,
		header: http.Header{"Content-Type": {mw.FormDataContentType()}},
		length: int64(len(head)) + size + int64(len(tail)),
		body: func() (io.Reader, error) {
			src.mu.Lock()
			defer src.mu.Unlock()
			src.attempt++
			if src.n > 0 {
				if !canSeek {
					return nil, errNoReplay
				}
				if _, err := seeker.Seek(start, io.SeekStart); err != nil {
					return nil, errNoReplay
				}
				src.n = 0
			}
			return io.MultiReader(bytes.NewReader(head), &exactReader{r: &attemptReader{s: src, attempt: src.attempt}, left: size, size: size},
				bytes.NewReader(tail)), nil
		},
	}
	if size >= expectContinueAbove {
		req.header.Set("Expect", "100-continue")
	}
	var f File
	err := c.doJSON(ctx, req, &f)
	return f, err
}

// sharedSource is the upload source shared by the attempts of one upload. The transport may go on
// reading an attempt's body in its own goroutine after the answer came (a 429 sent before the body was
// read); the guard's loan (body.go) ends that before do closes the answer, so before a retry rewinds
// and before UploadSmall returns. The source is still read under a lock, and a new attempt retires the
// readers of earlier ones, so that a transport below that broke the rule could not interleave reads.
type sharedSource struct {
	mu      sync.Mutex // guards r, n and attempt
	r       io.Reader
	n       int64 // bytes read since the last rewind: whether the body can still be sent again
	attempt int   // the attempt whose reader may read
}

// attemptReader is one attempt's reader of a sharedSource; it fails once a later attempt has started.
type attemptReader struct {
	s       *sharedSource
	attempt int
}

func (a *attemptReader) Read(p []byte) (int, error) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	if a.attempt != a.s.attempt {
		return 0, errNoReplay
	}
	n, err := a.s.r.Read(p)
	a.s.n += int64(n)
	return n, err
}

// exactReader passes on exactly size bytes and fails when the source has fewer or more, so a size that
// does not match the source is a clear error rather than a body the server cuts or misreads.
type exactReader struct {
	r          io.Reader
	left, size int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left == 0 {
		var one [1]byte
		if n, _ := io.ReadFull(e.r, one[:]); n > 0 {
			return 0, fmt.Errorf("upload source is longer than its size %d", e.size)
		}
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if errors.Is(err, io.EOF) {
		if e.left > 0 {
			return n, fmt.Errorf("upload source ended %d bytes before its size %d", e.left, e.size)
		}
		err = nil
	}
	return n, err
}

// Me is the key's user, with the default storage that direct uploads go to.
func (c *Client) Me(ctx context.Context) (User, error) {
	var u User
	err := c.getJSON(ctx, "/api/v3/users/me/", nil, &u)
	return u, err
}

// Credentials asks for short-lived storage credentials: for the user's default storage when req is nil,
// else for the storage and paths it names (a file in another storage).
func (c *Client) Credentials(ctx context.Context, req *CredentialsRequest) (StorageCredentials, error) {
	var sc StorageCredentials
	var body any
	if req != nil {
		body = req
	}
	err := c.postJSON(ctx, "/api/v3/credentials/", body, &sc)
	return sc, err
}

// RegisterFile registers an object uploaded directly to storage as a file (POST /api/v3/files/).
func (c *Client) RegisterFile(ctx context.Context, reg FileRegistration) (File, error) {
	var f File
	err := c.postJSON(ctx, "/api/v3/files/", reg, &f)
	return f, err
}
