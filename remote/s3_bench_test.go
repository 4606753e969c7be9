package remote

// Direct storage reads against /contents/ reads of the same ranges, on the emulator with WAN-like
// faults (20 ms per request, 25 MiB/s per connection), 8 readers in parallel. The API client paces
// file-access requests to the published 25/s (burst one second, the steady state of a busy mount);
// storage is not paced.
//
//	go test -run '^$' -bench Direct -benchtime 1x ./remote/

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

func BenchmarkDirectVsContents(b *testing.B) {
	const size = 128 << 20
	e, c, f := benchFile(b, Options{Burst: time.Second}, size)
	ctx := context.Background()
	d := NewDirectSource(c, DirectSourceOptions{})
	d.Register(f)
	e.SetFaults(emulator.Faults{Latency: 20 * time.Millisecond, Bandwidth: 25 << 20})
	for _, rs := range []int{64 << 10, 1 << 20, 8 << 20} {
		for _, path := range []string{"contents", "direct"} {
			b.Run(fmt.Sprintf("%s-%dKiB", path, rs>>10), func(b *testing.B) {
				const readers = 8
				n := max(16, 64<<20/rs) // ranges per iteration
				b.SetBytes(int64(n * rs))
				for b.Loop() {
					var wg sync.WaitGroup
					var fe error
					var mu sync.Mutex
					next := make(chan int64, n)
					rng := rand.New(rand.NewPCG(1, 2))
					for range n {
						next <- rng.Int64N(size-int64(rs)) / 16 * 16
					}
					close(next)
					for range readers {
						wg.Go(func() {
							p := make([]byte, rs)
							for off := range next {
								var err error
								if path == "direct" {
									err = d.ReadRange(ctx, f.ID, off, p)
								} else {
									err = c.ReadRange(ctx, f.ID, off, p)
								}
								if err != nil {
									mu.Lock()
									fe = err
									mu.Unlock()
								}
							}
						})
					}
					wg.Wait()
					if fe != nil {
						b.Fatal(fe)
					}
				}
			})
		}
	}
}

// benchFile serves an emulator over HTTP for the benchmark's life and returns it, a client of it (o,
// with its URL and key) and the metadata of a library file of size zero bytes.
func benchFile(b *testing.B, o Options, size int64) (*emulator.Emulator, *Client, File) {
	b.Helper()
	e, err := emulator.New(emulator.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(e)
	b.Cleanup(func() { srv.Close(); e.Close() })
	o.BaseURL, o.APIKey = srv.URL, e.APIKey()
	c, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	fi, err := e.AddLibraryFile("bench.bin", io.LimitReader(zeroReader{}, size), size)
	if err != nil {
		b.Fatal(err)
	}
	f, err := c.GetFile(context.Background(), fi.ID)
	if err != nil {
		b.Fatal(err)
	}
	return e, c, f
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
