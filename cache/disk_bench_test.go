package cache

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// The disk tier's own hot paths, without the fetcher: a get of a block held on disk, and a put that
// evicts one block to make room. Run before and after a change to the tier and compare with benchstat
// (never timed in tests).

const benchDiskBS = 1 << 20

func benchDiskTier(b *testing.B, maxBlocks int64) (*diskTier, Object, []byte) {
	b.Helper()
	d, err := openDisk(b.TempDir(), maxBlocks*diskFileSize(benchDiskBS), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(d.close)
	data := make([]byte, benchDiskBS)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(r.Uint32()) // incompressible, as most blocks are
	}
	return d, Object{ID: "bench-disk", Size: 1 << 40}, data
}

// BenchmarkDiskGet reads blocks back from the disk tier (one goroutine, then one per CPU).
func BenchmarkDiskGet(b *testing.B) {
	const n = 16
	for _, par := range []bool{false, true} {
		b.Run(map[bool]string{false: "serial", true: "parallel"}[par], func(b *testing.B) {
			d, obj, data := benchDiskTier(b, 2*n)
			for i := range int64(n) {
				d.put(obj, benchDiskBS, i, data, nil)
			}
			b.SetBytes(benchDiskBS)
			get := func(i int64) {
				if d.get(obj, benchDiskBS, i%n, benchDiskBS) == nil {
					b.Error("block missing")
				}
			}
			if !par {
				var i int64
				for b.Loop() {
					get(i)
					i++
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				i := rand.Int64N(n)
				for pb.Next() {
					get(i)
					i++
				}
			})
		})
	}
}

// BenchmarkDiskPutEvict writes new blocks into a full tier: every put evicts the least recently used.
func BenchmarkDiskPutEvict(b *testing.B) {
	const n = 8
	d, obj, data := benchDiskTier(b, n)
	for i := range int64(n) {
		d.put(obj, benchDiskBS, i, data, nil)
	}
	b.SetBytes(benchDiskBS)
	i := int64(n)
	for b.Loop() {
		d.put(obj, benchDiskBS, i, data, nil)
		i++
	}
	if _, blocks, _, errs := d.stats(); blocks != n || errs != 0 {
		b.Fatalf("%d blocks, %d errors; want %d, 0", blocks, errs, n)
	}
}

// BenchmarkDiskGetWhileEvicting reads blocks held on disk while another goroutine keeps writing new
// blocks into the full tier, each evicting one, on a disk whose unlinks take slowUnlink (a slow or
// network filesystem, modelled by the tier's unlink seam). It reports the gets that found their block
// gone (evicted: the benchmark's hot blocks should stay) per op.
func BenchmarkDiskGetWhileEvicting(b *testing.B) {
	const hot, slots = 4, 32
	const slowUnlink = 2 * time.Millisecond
	d, obj, data := benchDiskTier(b, slots)
	d.unlink = func(p string) error {
		time.Sleep(slowUnlink)
		return os.Remove(p)
	}
	churn := Object{ID: "bench-churn", Size: 1 << 40}
	for i := range int64(hot) {
		d.put(obj, benchDiskBS, i, data, nil)
	}
	for i := range int64(slots - hot) {
		d.put(churn, benchDiskBS, i, data, nil)
	}
	for i := range int64(hot) {
		d.get(obj, benchDiskBS, i, benchDiskBS) // most recently used: the churn evicts its own blocks
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := int64(slots - hot); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			d.put(churn, benchDiskBS, i, data, nil)
		}
	})
	b.SetBytes(benchDiskBS)
	var i, missing int64
	for b.Loop() {
		if d.get(obj, benchDiskBS, i%hot, benchDiskBS) == nil {
			missing++
		}
		i++
	}
	close(stop)
	wg.Wait()
	b.ReportMetric(float64(missing)/float64(b.N), "missing/op")
}
