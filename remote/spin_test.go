package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rescalefs/rescalefs/internal/testutil"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// spinTransport hands the client the emulator's real answers (over httptest, through the policy's
// transport) with their bodies made to spin once armed: the first `after` bytes of each body pass, then
// every Read returns 0, nil, as a broken proxy's body may. Only ctx ends the spin, with ctx's error:
// that is the test's guard against a client that never gives up (a hang would otherwise be all the
// test could show). dropRange strips Range from the requests, as a proxy that ignores it: the emulator
// then answers 200 with the whole file.
type spinTransport struct {
	base      http.RoundTripper
	ctx       context.Context
	after     int64
	dropRange bool
	armed     atomic.Bool
	spins     atomic.Int64 // empty reads handed out
}

func (t *spinTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.armed.Load() {
		return t.base.RoundTrip(req)
	}
	if t.dropRange {
		req = req.Clone(req.Context())
		req.Header.Del("Range")
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &spinBody{rc: resp.Body, t: t, left: t.after}
	return resp, nil
}

type spinBody struct {
	rc   io.ReadCloser
	t    *spinTransport
	left int64 // bytes still passed through before the spin
}

func (b *spinBody) Read(p []byte) (int, error) {
	if err := b.t.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.left == 0 {
		b.t.spins.Add(1)
		return 0, nil
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		return n, errors.New("spinTransport: the body is shorter than the bytes it should pass")
	}
	return n, nil
}

func (b *spinBody) Close() error { return b.rc.Close() }

// TestBodiesThatSpinGiveUp: every read of an answer's body in the client (a ranged read's loop, its skip
// to the offset when Range is ignored, its check for bytes past the end, a streamed read, live-file
// tails, JSON answers, error answers) gives up on a body that returns 0, nil for ever, after
// maxEmptyReads such reads, as readBody does: a cut answer, retried as one where retries apply,
// never a busy loop. The spin counts and the emulator's request counters show each attempt spun
// exactly maxEmptyReads times and was retried as a cut body is.
func TestBodiesThatSpinGiveUp(t *testing.T) {
	const attempts = 3
	const off = 1000
	for _, tc := range []struct {
		name      string
		after     int64 // bytes of each body before it spins
		dropRange bool
		endpoint  string
		requests  int64   // requests the call makes (attempts when the spin is retried)
		want      []error // what the error matches; none: the call succeeds
		// call makes the call and checks its data; file is a job file of 1 MiB, plain its bytes.
		call func(ctx context.Context, v *env, file string, plain []byte, running string) error
	}{
		{name: "ReadRange body", after: 1000, endpoint: emulator.EndpointContents, requests: attempts,
			want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, v *env, file string, plain []byte, _ string) error {
				p := make([]byte, 600000)
				err := v.c.ReadRange(ctx, file, off, p)
				// Each attempt resumed where the last one spun.
				if !bytes.Equal(p[:attempts*1000], plain[off:off+attempts*1000]) {
					v.t.Error("wrong bytes before the spin")
				}
				return err
			}},
		{name: "ReadRange body complete, then the check for more", after: 600000, endpoint: emulator.EndpointContents, requests: 1,
			call: func(ctx context.Context, v *env, file string, plain []byte, _ string) error {
				p := make([]byte, 600000)
				err := v.c.ReadRange(ctx, file, off, p)
				if err == nil && !bytes.Equal(p, plain[off:off+len(p)]) {
					v.t.Error("wrong bytes")
				}
				return err
			}},
		{name: "ReadRange skip of an ignored Range", after: off / 2, dropRange: true, endpoint: emulator.EndpointContents,
			requests: attempts, want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, v *env, file string, _ []byte, _ string) error {
				return v.c.ReadRange(ctx, file, off, make([]byte, 600000))
			}},
		{name: "ReadRange body after an ignored Range", after: off + 1000, dropRange: true, endpoint: emulator.EndpointContents,
			requests: attempts, want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, v *env, file string, _ []byte, _ string) error {
				return v.c.ReadRange(ctx, file, off, make([]byte, 600000))
			}},
		{name: "OpenRange stream", after: 1000, endpoint: emulator.EndpointContents, requests: 1,
			want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, v *env, file string, plain []byte, _ string) error {
				rc, err := v.c.OpenRange(ctx, file, 0, -1)
				if err != nil {
					return err
				}
				defer rc.Close()
				b, err := io.ReadAll(rc)
				if !bytes.Equal(b, plain[:1000]) {
					v.t.Errorf("streamed %d bytes, want the first 1000", len(b))
				}
				return err
			}},
		{name: "Tail", after: 100, endpoint: emulator.EndpointTail, requests: attempts,
			want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, v *env, _ string, _ []byte, running string) error {
				_, err := v.c.Tail(ctx, running, "1", "process_output.log")
				return err
			}},
		{name: "TailRange body", after: 100, endpoint: emulator.EndpointTail, requests: attempts,
			want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, v *env, _ string, _ []byte, running string) error {
				_, _, err := v.c.TailRange(ctx, running, "1", "process_output.log", 500, -1)
				return err
			}},
		{name: "TailRange skip of an ignored Range", after: 100, dropRange: true, endpoint: emulator.EndpointTail,
			requests: attempts, want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, v *env, _ string, _ []byte, running string) error {
				_, _, err := v.c.TailRange(ctx, running, "1", "process_output.log", 500, -1)
				return err
			}},
		{name: "JSON answer", after: 10, endpoint: emulator.EndpointJobs, requests: attempts,
			want: []error{io.ErrNoProgress},
			call: func(ctx context.Context, v *env, _ string, _ []byte, _ string) error {
				_, err := v.c.ListJobs(ctx, nil)
				return err
			}},
		{name: "error answer", after: 0, endpoint: emulator.EndpointContents, requests: 1,
			want: []error{ErrNotFound},
			call: func(ctx context.Context, v *env, _ string, _ []byte, _ string) error {
				return v.c.ReadRange(ctx, "no-such-file", 0, make([]byte, 10))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			st := &spinTransport{base: NewHTTPClient().Transport, ctx: ctx, after: tc.after, dropRange: tc.dropRange}
			v := newEnv(t, emulator.Options{}, func(o *Options) {
				o.HTTPClient = &http.Client{Transport: st}
				o.MaxAttempts = attempts
			})
			j := v.job(emulator.JobSpec{Files: []emulator.FileSpec{{RelativePath: "big.bin", Size: 1 << 20}}})
			running := v.job(emulator.JobSpec{Name: "running", RunFor: time.Hour,
				Files: []emulator.FileSpec{{RelativePath: "process_output.log", Size: 200000, Seed: 3}}})
			v.clk.Sleep(ctx, 30*time.Minute) // the running job has written its log by now
			files, err := v.c.JobFiles(ctx, j.ID, "big.bin")
			if err != nil {
				t.Fatal(err)
			}
			plain := v.plaintext(files[0].ID)
			v.e.ResetCounters()
			st.armed.Store(true)

			err = tc.call(ctx, v, files[0].ID, plain, running.ID)
			if ctx.Err() != nil {
				t.Fatalf("still reading after %d empty reads, when the test's deadline passed: %v", st.spins.Load(), err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v, want one matching %v", err, w)
				}
			}
			if len(tc.want) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			if n := v.requests(tc.endpoint); n != tc.requests {
				t.Errorf("%d requests to %s, want %d", n, tc.endpoint, tc.requests)
			}
			if n := st.spins.Load(); n != tc.requests*maxEmptyReads {
				t.Errorf("%d empty reads, want %d (%d per answer)", n, tc.requests*maxEmptyReads, maxEmptyReads)
			}
		})
	}
}

// TestS3BodiesThatSpinGiveUp: the storage's answers are read by the SDK as well as by readBody, and the
// SDK copies an error answer's body with io.Copy (and drains it the same way before closing it), which
// spins on a body that returns 0, nil: those bodies give up after maxEmptyReads empty reads too (an
// error answer's in one attempt; a ranged GET's, resumed after each give-up, in each of its attempts).
func TestS3BodiesThatSpinGiveUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		after    int64
		endpoint string
		requests int64
		// drains: reads after the give-up, each answered with io.ErrNoProgress at once (the SDK drains
		// an error answer's body before it closes it).
		drains int64
		call   func(ctx context.Context, s *S3Client, f File) error
		want   []error
	}{
		{name: "GetObject error answer", endpoint: emulator.EndpointS3Get, requests: 1, drains: 1, want: []error{io.ErrNoProgress},
			call: func(ctx context.Context, s *S3Client, f File) error {
				f.PathParts.Path += "-missing"
				return s.ReadRangeDirect(ctx, f, 0, make([]byte, 100))
			}},
		{name: "ListParts error answer", endpoint: emulator.EndpointS3ListParts, requests: 1, drains: 1, want: []error{io.ErrNoProgress},
			call: func(ctx context.Context, s *S3Client, f File) error {
				_, err := s.SDK().ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(f.PathParts.Container),
					Key: aws.String(f.PathParts.Path), UploadId: aws.String("no-such-upload")})
				return err
			}},
		{name: "GetObject body", after: 1000, endpoint: emulator.EndpointS3Get, requests: directBodyAttempts,
			want: []error{ErrShortBody, io.ErrNoProgress},
			call: func(ctx context.Context, s *S3Client, f File) error {
				return s.ReadRangeDirect(ctx, f, 0, make([]byte, 100000))
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			v := newS3Env(t)
			f := v.libraryFile("s.bin", testutil.RandomBytes(9, 200000))
			st := &spinTransport{base: NewHTTPClient().Transport, ctx: ctx, after: tc.after}
			s := v.s3(S3Options{HTTPClient: &http.Client{Transport: st}})
			v.e.ResetCounters()
			st.armed.Store(true)

			err := tc.call(ctx, s, f)
			if ctx.Err() != nil {
				t.Fatalf("still reading after %d empty reads, when the test's deadline passed: %v", st.spins.Load(), err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %v, want one matching %v", err, w)
				}
			}
			if n := v.e.Counters().Requests[tc.endpoint]; n != tc.requests {
				t.Errorf("%d requests to %s, want %d", n, tc.endpoint, tc.requests)
			}
			if n, want := st.spins.Load(), tc.requests*maxEmptyReads+tc.drains; n != want {
				t.Errorf("%d empty reads, want %d (%d per answer, then %d)", n, want, maxEmptyReads, tc.drains)
			}
		})
	}
}
