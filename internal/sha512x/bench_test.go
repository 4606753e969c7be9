package sha512x

import (
	"crypto/sha512"
	"fmt"
	"hash"
	"runtime"
	"testing"
)

// BenchmarkSHA512 compares this package's hash with crypto/sha512's, written in 8 MiB (a cache
// block) and 64 KiB pieces:
//
//	go test -run - -bench . -count 6 ./internal/sha512x/ | benchstat -col /impl -
//
// Besides MB/s of wall time it reports cpu-MB/s, bytes per second of the benchmark thread's own CPU
// time, which time spent waiting for a core on a busy machine does not dilute.
func BenchmarkSHA512(b *testing.B) {
	for _, size := range []int{8 << 20, 64 << 10} {
		buf := make([]byte, size)
		for i := range buf {
			buf[i] = byte(i * 131)
		}
		for _, impl := range []struct {
			name string
			new  func() hash.Hash
		}{{"sha512x", New}, {"crypto", sha512.New}} {
			b.Run(fmt.Sprintf("size=%dKiB/impl=%s", size>>10, impl.name), func(b *testing.B) {
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				h := impl.new()
				sum := make([]byte, 0, Size)
				b.SetBytes(int64(size))
				cpu0 := threadCPU(b)
				n := 0
				for b.Loop() {
					h.Reset()
					h.Write(buf)
					sum = h.Sum(sum[:0])
					n++
				}
				if cpu := threadCPU(b) - cpu0; cpu > 0 {
					b.ReportMetric(float64(n)*float64(size)/1e6/cpu.Seconds(), "cpu-MB/s")
				}
			})
		}
	}
}
