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
	e, err := emulator.New(emulator.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(e)
	defer srv.Close()
	defer e.Close()
	c, err := New(Options{BaseURL: srv.URL, APIKey: e.APIKey(), Burst: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	const size = 128 << 20
	fi, err := e.AddLibraryFile("bench.bin", io.LimitReader(zeroReader{}, size), size)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	f, err := c.GetFile(ctx, fi.ID)
	if err != nil {
		b.Fatal(err)
	}
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

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
