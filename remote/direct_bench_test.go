package remote

// The CPU cost of direct storage reads on the client side: one reader, no faults, the cache's shape
// (8 MiB blocks, two per ranged GET). The emulator serves in the same process, so cpu-s/GiB counts
// its side as well; compare runs side by side, and profile (-cpuprofile) to split the two.
//
//	go test -run '^$' -bench ReadRangeDirectVec -count 6 ./remote/

import (
	"context"
	"syscall"
	"testing"
	"time"
)

func BenchmarkReadRangeDirectVec(b *testing.B) {
	const (
		block = 8 << 20
		per   = 2 // blocks per call
		size  = 4*block + 100
	)
	_, c, f := benchFile(b, Options{}, size)
	ctx := context.Background()
	s, err := c.NewS3Client(ctx, S3Options{})
	if err != nil {
		b.Fatal(err)
	}
	bufs := make([][]byte, per)
	for i := range bufs {
		bufs[i] = make([]byte, block)
	}
	// The first read of a file learns its IV; later ones start at an offset that is not block 0.
	if err := s.ReadRangeDirectVec(ctx, f, 0, bufs); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(per * block)
	b.ReportAllocs()
	cpu0 := cpuTime()
	off := int64(0)
	for b.Loop() {
		if err := s.ReadRangeDirectVec(ctx, f, off, bufs); err != nil {
			b.Fatal(err)
		}
		if off += per * block; off+per*block > size {
			off = 0
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(cpu.Seconds()/(float64(b.N)*per*block/(1<<30)), "cpu-s/GiB")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
