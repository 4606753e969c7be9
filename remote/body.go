package remote

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// maxEmptyReads bounds the reads in a row that return no byte and no error: a body that keeps doing
// that (a broken proxy or middlebox, a buggy transport) would make any loop over it spin for ever,
// io.ReadAll and io.Copy included. (bufio.Reader gives up after 100 such reads too.)
const maxEmptyReads = 100

// progressBody fails a body with io.ErrNoProgress once maxEmptyReads reads in a row have returned no
// byte and no error, and on every empty read after that. It is the one guard against spinning bodies:
// the HTTP clients of Client and S3Client put every answer's body behind one (guardClient), so our
// loops, io.ReadAll, io.Copy and the SDK's readers all stop; readBody puts whatever it is given behind
// one too. Our callers report the error as a body cut short (shortBodyErr), retried as one.
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

// guardClient is a copy of hc whose answers' bodies are behind a progressBody. It wraps whatever
// transport hc has, the policy's or one a caller gave, so a body that spins below any of them is caught.
func guardClient(hc *http.Client) *http.Client {
	g := *hc
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	g.Transport = guardTransport{base: base}
	return &g
}

// guardTransport puts each answer's body behind a progressBody.
type guardTransport struct{ base http.RoundTripper }

func (t guardTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	body := resp.Body
	resp.Body = struct {
		io.Reader
		io.Closer
	}{&progressBody{r: body}, body}
	return resp, nil
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pool below.
func (t guardTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
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
