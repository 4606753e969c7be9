package remote

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// maxEmptyReads bounds the reads in a row that return no byte and no error: a body that keeps doing
// that (a broken proxy or middlebox, a buggy transport) would make any loop over it spin for ever,
// io.ReadAll and io.Copy included. (bufio.Reader gives up after 100 such reads too.)
const maxEmptyReads = 100

// progressBody fails a body with io.ErrNoProgress once maxEmptyReads reads in a row have returned no
// byte and no error, and on every empty read after that. It is the one guard against spinning bodies:
// the HTTP clients of Client and S3Client put every answer's body behind one (guardClient), so our
// loops, io.ReadAll, io.Copy and the SDK's readers all stop; readBody puts a body that is not one of
// those answers' behind one too. Our callers report the error as a body cut short (shortBodyErr),
// retried as one.
type progressBody struct {
	r     io.Reader
	empty int // reads in a row that returned nothing
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	switch {
	case n > 0 || err != nil:
		b.empty = 0
	case len(p) == 0:
		// Nothing was asked: not a read that got nothing.
	default:
		if b.empty++; b.empty >= maxEmptyReads {
			return 0, io.ErrNoProgress
		}
	}
	return n, err
}

// guardClient is a copy of hc whose answers' bodies are behind a progressBody and whose request
// bodies are only lent to the transport (loan). It wraps whatever transport hc has, the policy's or one
// a caller gave, so a body that spins below any of them is caught, and no transport below reads a
// caller's body after the call returned.
func guardClient(hc *http.Client) *http.Client {
	g := *hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	g.Transport = &guardTransport{base: base}
	return &g
}

// guardTransport puts each answer's body behind a progressBody and lends the transport below each
// request body until the answer's body is closed.
type guardTransport struct {
	base http.RoundTripper
}

func (t *guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var l *loan
	if req.Body != nil && req.Body != http.NoBody {
		l = &loan{}
		r2 := *req // RoundTrip must not change the caller's request
		r2.Body = l.lend(req.Body)
		if gb := req.GetBody; gb != nil {
			// The transport below may replay the body from GetBody (a reused connection that
			// failed before the request went out): that body is lent under the same loan.
			r2.GetBody = func() (io.ReadCloser, error) {
				rc, err := gb()
				if err != nil {
					return nil, err
				}
				return l.lend(rc), nil
			}
		}
		req = &r2
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		l.end()
		return resp, err
	}
	resp.Body = &guardedBody{progressBody: progressBody{r: resp.Body}, rc: resp.Body, loan: l}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool below.
func (t *guardTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// guardedBody is an answer's body behind a progressBody; closing it ends its request's loan.
type guardedBody struct {
	progressBody
	rc   io.Closer
	loan *loan // nil: the request had no body
}

func (b *guardedBody) Close() error {
	err := b.rc.Close()
	b.loan.end()
	return err
}

// errLoanEnded is what the transport reads from a request body after its loan ended. It never reaches
// a caller: the call has its answer by then.
var errLoanEnded = errors.New("request body read after its call returned")

// loan is a request's body as lent to the transport below. Go lets a transport read and close a
// request body after RoundTrip returned ("RoundTrip must always close the body ... may do so in a
// separate goroutine even after RoundTrip returns"; http.Client.Do: "The Body may be closed
// asynchronously after Do returns"): Go's own transport goes on sending a body the platform answered
// before reading it all (an early error or 429), until a write fails. Our callers close, reuse, truncate
// or delete the file behind a body as soon as the call returns. So a loan ends when the answer's body
// is closed (every call closes it before it returns, and before a retry rewinds the source) or the
// round trip failed: end closes the bodies, waits for a Read in progress, and from then on the
// transport's Reads fail without reaching the caller's reader. (The AWS SDK guards its own requests
// the same way, closing a wrapper that waits for a Read in progress when Do returns; the loan covers
// the API client's requests, whose bodies go to net/http as they are, and any transport a caller gave.)
type loan struct {
	reading sync.Mutex // held across each Read of a lent body, so that end can wait for it

	mu     sync.Mutex // guards ended and bodies
	ended  bool
	bodies []*lentBody
}

// lend wraps rc in a body that reads only while the loan lasts.
func (l *loan) lend(rc io.ReadCloser) io.ReadCloser {
	b := &lentBody{rc: rc, l: l}
	l.mu.Lock()
	ended := l.ended
	if !ended {
		l.bodies = append(l.bodies, b)
	}
	l.mu.Unlock()
	if ended {
		b.Close()
	}
	return b
}

func (l *loan) isEnded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ended
}

// end ends the loan; a nil loan (a request without a body) has nothing to end. It is safe to repeat.
func (l *loan) end() {
	if l == nil {
		return
	}
	l.mu.Lock()
	l.ended = true
	bodies := l.bodies
	l.mu.Unlock()
	reading := !l.reading.TryLock()
	// Closing before waiting ends a Read that waits on a pipe (the transport itself may close a body
	// during a Read); a Read of a file finishes on its own (and some bodies' Close waits for it).
	for _, b := range bodies {
		b.Close()
	}
	if reading {
		l.reading.Lock()
	}
	l.reading.Unlock()
}

// lentBody is one body of a loan (the request's, or one the transport made again with GetBody).
type lentBody struct {
	rc    io.ReadCloser
	l     *loan
	close sync.Once
	err   error // of rc.Close; written once under close
}

func (b *lentBody) Read(p []byte) (int, error) {
	b.l.reading.Lock()
	defer b.l.reading.Unlock()
	if b.l.isEnded() {
		return 0, errLoanEnded
	}
	return b.rc.Read(p)
}

// Close closes rc once, whoever asks first: the transport, or the end of the loan.
func (b *lentBody) Close() error {
	b.close.Do(func() { b.err = b.rc.Close() })
	return b.err
}

// shortBodyErr is the error of a body that broke off before its end: ErrShortBody, with the cause
// after prefix. The cause is kept as text, as the callers always did, except io.ErrNoProgress, which
// stays matchable: that body did not break, it spun.
func shortBodyErr(prefix string, err error) error {
	if errors.Is(err, io.ErrNoProgress) {
		return fmt.Errorf("%s%w: %w", prefix, ErrShortBody, io.ErrNoProgress)
	}
	return fmt.Errorf("%s%w: %v", prefix, ErrShortBody, err)
}
