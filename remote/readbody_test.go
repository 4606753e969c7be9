package remote

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// stallingBody gives data a byte per read, each byte after stall reads that return 0, nil, and after
// the data 0, nil for ever: until ctx is done, the test's guard against a readBody that never gives up
// (a hang would otherwise be all the test could show).
type stallingBody struct {
	ctx   context.Context
	data  []byte
	stall int // empty reads before each byte
	left  int // empty reads before the next byte
	reads int
}

func (b *stallingBody) Read(p []byte) (int, error) {
	b.reads++
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	if len(b.data) == 0 || b.left > 0 {
		b.left--
		return 0, nil
	}
	b.left = b.stall
	n := copy(p[:1], b.data)
	b.data = b.data[n:]
	return n, nil
}

// sliceSink is a rangeSink over one buffer.
type sliceSink struct {
	buf []byte
	n   int
}

func (s *sliceSink) Next() []byte        { return s.buf[s.n:] }
func (s *sliceSink) Advance(k int) error { s.n += k; return nil }

// TestReadBodyGivesUpOnEmptyReads: a body that returns 0, nil gives up with io.ErrNoProgress, as a
// retryable short body, after maxEmptyReads such reads in a row, instead of spinning for ever; empty
// reads between bytes do not count against it as long as each stall is shorter.
func TestReadBodyGivesUpOnEmptyReads(t *testing.T) {
	data := []byte("twenty bytes of body")
	for _, tc := range []struct {
		name     string
		data     []byte
		stall    int
		wantDone int
		wantErr  bool
	}{
		{"always empty", nil, 0, 0, true},
		{"empty after some bytes", data[:7], 0, 7, true},
		{"stalls one short of the bound", data, maxEmptyReads - 1, len(data), false},
		{"stalls as long as the bound", data, maxEmptyReads, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			body := &stallingBody{ctx: ctx, data: tc.data, stall: tc.stall, left: tc.stall}
			sink := &sliceSink{buf: make([]byte, len(data))}
			var done int64
			err := readBody(body, int64(len(data)), sink, &done)
			if ctx.Err() != nil {
				t.Fatalf("readBody still reading after %d reads, when the test's deadline passed: %v", body.reads, err)
			}
			if done != int64(tc.wantDone) || sink.n != tc.wantDone {
				t.Errorf("done %d, sink advanced by %d, want %d", done, sink.n, tc.wantDone)
			}
			if !bytes.Equal(sink.buf[:sink.n], data[:sink.n]) {
				t.Errorf("sink has %q", sink.buf[:sink.n])
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var rb *retryableBody
			if !errors.As(err, &rb) || !errors.Is(err, ErrShortBody) || !errors.Is(err, io.ErrNoProgress) {
				t.Fatalf("error %v, want a retryable ErrShortBody with io.ErrNoProgress", err)
			}
			// The bytes read, each after its stall, then maxEmptyReads empty reads in a row.
			if want := tc.wantDone*(tc.stall+1) + maxEmptyReads; body.reads != want {
				t.Errorf("%d reads of the body, want %d", body.reads, want)
			}
		})
	}
}

// TestReadBodyGuardsOnce: an answer's body from our clients is already behind the guard
// (guardedBody); readBody reads it as it is, without a second progressBody around it (which cost an
// allocation per read and counted the same empty reads twice), and still gives up on it when it spins.
func TestReadBodyGuardsOnce(t *testing.T) {
	data := testutil.RandomBytes(5, 4096)
	r := bytes.NewReader(data)
	body := &guardedBody{progressBody: progressBody{r: r}, rc: io.NopCloser(nil)}
	sink := &sliceSink{buf: make([]byte, len(data))}
	var done int64
	// Everything is made outside the run: what it allocates, readBody does.
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(data)
		sink.n, done = 0, 0
		if err := readBody(body, int64(len(data)), sink, &done); err != nil || done != int64(len(data)) {
			t.Fatalf("read %d bytes: %v", done, err)
		}
	})
	if allocs != 0 {
		t.Errorf("readBody of a guarded body makes %v allocations, want none: it wraps the body again", allocs)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	spin := &stallingBody{ctx: ctx}
	body = &guardedBody{progressBody: progressBody{r: spin}, rc: io.NopCloser(nil)}
	done = 0
	err := readBody(body, 10, &sliceSink{buf: make([]byte, 10)}, &done)
	if ctx.Err() != nil {
		t.Fatalf("readBody still reading after %d reads, when the test's deadline passed: %v", spin.reads, err)
	}
	if !errors.Is(err, io.ErrNoProgress) || spin.reads != maxEmptyReads {
		t.Errorf("error %v after %d reads, want io.ErrNoProgress after %d", err, spin.reads, maxEmptyReads)
	}
}
