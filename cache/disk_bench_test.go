package cache

import (
	"log/slog"
	"math/rand/v2"
	"testing"
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
