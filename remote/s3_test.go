package remote

// Direct storage access against the emulator's S3 endpoint. These tests run on the wall clock: SigV4
// and the SDK's credential cache read the real time.

import (
	"bytes"
	"context"
	"errors"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

type s3Env struct {
	t   *testing.T
	e   *emulator.Emulator
	srv *httptest.Server
	c   *Client
}

func newS3Env(t *testing.T) *s3Env {
	t.Helper()
	return newS3EnvPolicy(t, Policy{})
}

// newS3EnvPolicy is newS3Env with the client under policy p.
func newS3EnvPolicy(t *testing.T, p Policy) *s3Env {
	t.Helper()
	e, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(func() {
		srv.Close()
		e.Close()
	})
	c, err := New(Options{BaseURL: srv.URL, APIKey: e.APIKey(), MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Policy: p})
	if err != nil {
		t.Fatal(err)
	}
	return &s3Env{t: t, e: e, srv: srv, c: c}
}

// libraryFile stores plain as a library file and returns its metadata as the API gives it.
func (v *s3Env) libraryFile(name string, plain []byte) File {
	v.t.Helper()
	fi, err := v.e.AddLibraryFile(name, bytes.NewReader(plain), int64(len(plain)))
	if err != nil {
		v.t.Fatal(err)
	}
	f, err := v.c.GetFile(context.Background(), fi.ID)
	if err != nil {
		v.t.Fatal(err)
	}
	return f
}

func (v *s3Env) s3(o S3Options) *S3Client {
	v.t.Helper()
	o.MaxBackoff = 10 * time.Millisecond
	s, err := v.c.NewS3Client(context.Background(), o)
	if err != nil {
		v.t.Fatal(err)
	}
	return s
}

func TestS3DirectReadMatchesContents(t *testing.T) {
	v := newS3Env(t)
	ctx := context.Background()
	s := v.s3(S3Options{})
	for _, size := range []int{1, 15, 16, 17, 100_003, 3<<20 + 5} {
		plain := testutil.RandomBytes(uint64(size), size)
		f := v.libraryFile("f.bin", plain)
		rng := rand.New(rand.NewPCG(uint64(size), 1))
		ranges := [][2]int64{{0, 1}, {0, int64(size)}, {int64(size) - 1, 1}}
		if size > 40 {
			ranges = append(ranges, [2]int64{15, 2}, [2]int64{16, 16}, [2]int64{31, 9})
		}
		for range 20 {
			off := rng.Int64N(int64(size))
			ranges = append(ranges, [2]int64{off, 1 + rng.Int64N(int64(size)-off)})
		}
		for _, r := range ranges {
			off, n := r[0], r[1]
			direct := make([]byte, n)
			if err := s.ReadRangeDirect(ctx, f, off, direct); err != nil {
				t.Fatalf("size %d: direct [%d,+%d): %v", size, off, n, err)
			}
			api := make([]byte, n)
			if err := v.c.ReadRange(ctx, f.ID, off, api); err != nil {
				t.Fatalf("size %d: contents [%d,+%d): %v", size, off, n, err)
			}
			if !bytes.Equal(direct, api) || !bytes.Equal(direct, plain[off:off+n]) {
				t.Fatalf("size %d: range [%d,+%d) differs", size, off, n)
			}
		}
		if err := s.ReadRangeDirect(ctx, f, int64(size), make([]byte, 1)); !errors.Is(err, ErrRange) {
			t.Fatalf("read at EOF: %v, want ErrRange", err)
		}
		if err := s.ReadRangeDirect(ctx, f, int64(size)-1, make([]byte, 2)); !errors.Is(err, ErrShortBody) {
			t.Fatalf("read past EOF: %v, want ErrShortBody", err)
		}
	}
	c := v.e.Counters()
	if c.Requests[emulator.EndpointS3Head] != 0 {
		t.Errorf("%d HEAD requests: the iv should come with the GET answers", c.Requests[emulator.EndpointS3Head])
	}
	if c.Requests[emulator.EndpointCredentials] != 1 {
		t.Errorf("%d credentials requests, want 1", c.Requests[emulator.EndpointCredentials])
	}
}

func TestS3DirectReadResumesCutBody(t *testing.T) {
	v := newS3Env(t)
	s := v.s3(S3Options{})
	plain := testutil.RandomBytes(3, 1<<20+100)
	f := v.libraryFile("cut.bin", plain)
	v.e.FailNext(emulator.EndpointS3Get, 1, emulator.FaultCut)
	v.e.FailNext(emulator.EndpointS3Get, 1, emulator.Fault503)
	got := make([]byte, 1<<20)
	if err := s.ReadRangeDirect(context.Background(), f, 50, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain[50:50+1<<20]) {
		t.Fatal("bytes differ after a cut body")
	}
}

func TestS3WrongKeyIsAnError(t *testing.T) {
	v := newS3Env(t)
	s := v.s3(S3Options{})
	f := v.libraryFile("k.bin", testutil.RandomBytes(4, 1000))
	g := v.libraryFile("other.bin", testutil.RandomBytes(5, 1000))
	f.EncodedEncryptionKey = g.EncodedEncryptionKey
	if err := s.ReadRangeDirect(context.Background(), f, 0, make([]byte, 1000)); err == nil {
		t.Fatal("a read with the wrong key returned data")
	}
}

func TestS3CredentialProviderRefreshes(t *testing.T) {
	v := newS3Env(t)
	p := &credentialProvider{c: v.c, now: time.Now}
	for i := range 2 {
		cr, err := p.Retrieve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !cr.CanExpire || cr.Expires.Before(time.Now().Add(10*time.Minute)) || cr.AccessKeyID == "" {
			t.Fatalf("retrieve %d: %+v", i, cr.Expires)
		}
	}
	if n := v.e.Counters().Requests[emulator.EndpointCredentials]; n != 2 {
		t.Fatalf("%d credentials requests, want 2", n)
	}
}

// logCounter counts log records whose message contains a text.
type logCounter struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Message)
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }
func (l *logCounter) count(sub string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if strings.Contains(m, sub) {
			n++
		}
	}
	return n
}

func TestDirectSourceReadsDirectAndFallsBack(t *testing.T) {
	v := newS3Env(t)
	ctx := context.Background()
	logs := &logCounter{}
	d := NewDirectSource(v.c, DirectSourceOptions{Logger: slog.New(logs), S3: S3Options{MaxAttempts: 2, MaxBackoff: time.Millisecond}})
	plain := testutil.RandomBytes(9, 2<<20+77)
	f := v.libraryFile("src.bin", plain)
	// Not registered: one GetFile, then direct.
	v.e.ResetCounters()
	got := make([]byte, 4096)
	if err := d.ReadRange(ctx, f.ID, 12345, got); err != nil || !bytes.Equal(got, plain[12345:12345+4096]) {
		t.Fatalf("direct read: %v", err)
	}
	c := v.e.Counters()
	if c.Requests[emulator.EndpointContents] != 0 || c.Requests[emulator.EndpointS3Get] != 1 || c.Requests[emulator.EndpointFile] != 1 {
		t.Fatalf("direct read went %v", c.Requests)
	}
	// Storage failing: every attempt of the GET fails, the API serves the bytes, one log line per file.
	v.e.FailNext(emulator.EndpointS3Get, 2, emulator.Fault500)
	v.e.ResetCounters()
	for i := range 3 {
		off := int64(i) * 100_000
		if err := d.ReadRange(ctx, f.ID, off, got); err != nil || !bytes.Equal(got, plain[off:off+4096]) {
			t.Fatalf("fallback read %d: %v", i, err)
		}
	}
	c = v.e.Counters()
	if c.Requests[emulator.EndpointContents] != 3 || c.Requests[emulator.EndpointS3Get] != 2 {
		t.Fatalf("fallback went %v", c.Requests)
	}
	if n := logs.count("direct storage read failed"); n != 1 {
		t.Fatalf("%d log lines for one failing file, want 1", n)
	}
	// A range past the end is an error, not a fallback.
	if err := d.ReadRange(ctx, f.ID, int64(len(plain))-1, make([]byte, 2)); !errors.Is(err, ErrShortBody) {
		t.Fatalf("past EOF: %v", err)
	}
	// A registered file in a non-S3 storage reads through the API without trying storage.
	g := v.libraryFile("azure.bin", plain[:1000])
	g.Storage.StorageType = "AzureStorage"
	d.Register(g)
	v.e.ResetCounters()
	if err := d.ReadRange(ctx, g.ID, 0, got[:1000]); err != nil || !bytes.Equal(got[:1000], plain[:1000]) {
		t.Fatalf("azure read: %v", err)
	}
	if c := v.e.Counters(); c.Requests[emulator.EndpointS3Get] != 0 || c.Requests[emulator.EndpointContents] != 1 {
		t.Fatalf("non-S3 read went %v", c.Requests)
	}
}

// TestDirectSourceSplittable: files read from storage may have a block split over several requests;
// files read through /contents/ (not on S3, no key, or whose storage read just failed) may not, as each
// request there counts against the platform's limit.
func TestDirectSourceSplittable(t *testing.T) {
	v := newS3Env(t)
	ctx := context.Background()
	d := NewDirectSource(v.c, DirectSourceOptions{S3: S3Options{MaxAttempts: 1, MaxBackoff: time.Millisecond}})
	plain := testutil.RandomBytes(17, 100_000)
	s3f := v.libraryFile("s3.bin", plain)
	azure := v.libraryFile("azure.bin", plain)
	azure.Storage.StorageType = "AzureStorage"
	nokey := v.libraryFile("nokey.bin", plain)
	nokey.EncodedEncryptionKey = ""
	d.Register(s3f, azure, nokey)
	for _, tc := range []struct {
		id   string
		want bool
	}{{s3f.ID, true}, {azure.ID, false}, {nokey.ID, false}, {"not-listed-yet", true}} {
		if got := d.Splittable(tc.id); got != tc.want {
			t.Errorf("Splittable(%s) = %v, want %v", tc.id, got, tc.want)
		}
	}
	// Storage failing for s3.bin: the read goes through /contents/, and so do the next ones for a while.
	v.e.FailNext(emulator.EndpointS3Get, 5, emulator.Fault500)
	if err := d.ReadRange(ctx, s3f.ID, 0, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if d.Splittable(s3f.ID) {
		t.Fatal("a file whose storage read just failed (now read through /contents/) is splittable")
	}
}

func TestDirectSourceConcurrentFirstReads(t *testing.T) {
	v := newS3Env(t)
	d := NewDirectSource(v.c, DirectSourceOptions{})
	plain := testutil.RandomBytes(11, 1<<20)
	f := v.libraryFile("many.bin", plain)
	d.Register(f)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			p := make([]byte, 1000)
			off := int64(i) * 50_000
			if err := d.ReadRange(context.Background(), f.ID, off, p); err != nil {
				errs <- err
			} else if !bytes.Equal(p, plain[off:off+1000]) {
				errs <- errors.New("bytes differ")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := v.e.Counters().Requests[emulator.EndpointCredentials]; n != 1 {
		t.Fatalf("%d credentials requests for one storage, want 1", n)
	}
}

// TestDirectSourceVectoredRead: a range spread over several buffers (the cache's blocks) is one GET,
// decrypted as it streams in straight into the buffers, through body cuts, whatever the alignment of
// the range and of the buffers; from block 0 (the file IV) and from the middle (the block before).
func TestDirectSourceVectoredRead(t *testing.T) {
	const vecChunk = 256 << 10
	v := newS3Env(t)
	ctx := context.Background()
	d := NewDirectSource(v.c, DirectSourceOptions{})
	plain := testutil.RandomBytes(13, 3*vecChunk+1000)
	f := v.libraryFile("vec.bin", plain)
	d.Register(f)
	for _, tc := range []struct {
		name  string
		off   int64
		sizes []int
		cut   bool
	}{
		{"from 0, blocks", 0, []int{vecChunk, vecChunk, vecChunk, 1000}, false},
		{"middle, ragged buffers", 100, []int{1, 17, vecChunk + 5, 3, 40_000}, false},
		{"cut twice mid-body", 16, []int{vecChunk, 2 * vecChunk}, true},
		{"last byte", int64(len(plain)) - 1, []int{1}, false},
		{"storage failing: through /contents/", 5, []int{vecChunk, 77}, false}, // last: the file then stays on /contents/
	} {
		t.Run(tc.name, func(t *testing.T) {
			fallback := strings.HasPrefix(tc.name, "storage failing")
			if tc.cut {
				v.e.FailNext(emulator.EndpointS3Get, 2, emulator.FaultCut)
			}
			if fallback {
				v.e.FailNext(emulator.EndpointS3Get, 10, emulator.Fault500)
			}
			v.e.ResetCounters()
			var bufs [][]byte
			total := 0
			for _, n := range tc.sizes {
				bufs = append(bufs, make([]byte, n))
				total += n
			}
			sums := make([]uint32, len(bufs))
			if err := d.ReadRangeVecSum(ctx, f.ID, tc.off, bufs, sums); err != nil {
				t.Fatal(err)
			}
			if got := bytes.Join(bufs, nil); !bytes.Equal(got, plain[tc.off:tc.off+int64(total)]) {
				t.Fatal("bytes differ")
			}
			for i, b := range bufs {
				if want := crc32.Checksum(b, castagnoli); sums[i] != want {
					t.Fatalf("buffer %d sum %08x, want %08x", i, sums[i], want)
				}
			}
			if fallback {
				// The emulator counts a request on arrival, so the read that returned is counted.
				if c := v.e.Counters(); c.Requests[emulator.EndpointContents] != 1 {
					t.Fatalf("requests %v, want one through /contents/", c.Requests)
				}
				return
			}
			c := v.e.Counters()
			want := int64(1)
			if tc.cut {
				want = 3
			}
			if c.Requests[emulator.EndpointS3Get] != want || c.Requests[emulator.EndpointContents] != 0 {
				t.Fatalf("requests %v, want %d S3 GETs", c.Requests, want)
			}
		})
	}
}

// TestDirectSourceWarmsStorageOnRegister: listing a file on S3 (Register) starts its storage's client,
// so the first read does not wait for a credentials request of its own; a file elsewhere starts none.
// Close ends a creation the platform holds and waits for it; afterwards Register starts none.
func TestDirectSourceWarmsStorageOnRegister(t *testing.T) {
	v := newS3Env(t)
	ctx := context.Background()
	d := NewDirectSource(v.c, DirectSourceOptions{})
	defer d.Close()
	plain := testutil.RandomBytes(23, 100_000)
	f := v.libraryFile("warm.bin", plain)
	azure := v.libraryFile("azure.bin", plain)
	azure.Storage.StorageType = "AzureStorage"
	azure.Storage.ID = "azure-storage"
	credentials := func() int64 { return v.e.Counters().Requests[emulator.EndpointCredentials] }

	d.Register(azure, f)
	testutil.Eventually(t, 30*time.Second, "the credentials request a listing starts", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		e, ok := d.stores[f.Storage.ID]
		return ok && e.s3 != nil
	})
	if n := credentials(); n != 1 {
		t.Fatalf("%d credentials requests after listing a file on S3 and one elsewhere, want 1", n)
	}
	got := make([]byte, 4096)
	if err := d.ReadRange(ctx, f.ID, 1000, got); err != nil || !bytes.Equal(got, plain[1000:1000+4096]) {
		t.Fatalf("read: %v", err)
	}
	if c := v.e.Counters(); c.Requests[emulator.EndpointCredentials] != 1 || c.Requests[emulator.EndpointS3Get] != 1 {
		t.Fatalf("the first read went %v, want one S3 GET and no credentials request of its own", c.Requests)
	}

	// A creation the platform holds ends with Close.
	d2 := NewDirectSource(v.c, DirectSourceOptions{})
	v.e.SetFaults(emulator.Faults{Frozen: true})
	d2.Register(f)
	testutil.Eventually(t, 30*time.Second, "the held credentials request", func() bool { return v.e.Holding() == 1 })
	d2.mu.Lock()
	fl := d2.flights[f.Storage.ID]
	d2.mu.Unlock()
	d2.Close()
	if !errors.Is(fl.err, context.Canceled) {
		t.Fatalf("the held creation ended with %v, want it cancelled by Close", fl.err)
	}
	v.e.SetFaults(emulator.Faults{})
	d2.Register(f)
	d2.mu.Lock()
	flights := len(d2.flights)
	d2.mu.Unlock()
	if flights != 0 {
		t.Fatalf("%d storage clients being created after Close", flights)
	}
}
