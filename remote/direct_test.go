package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// TestS3DirectReadVecCutBodies: bodies cut or short (half of what each answer promised, so the breaks
// fall anywhere in an AES block and in the buffers) are resumed into the same buffers and decrypted
// right; when every attempt breaks, the read fails with ErrShortBody, never returns partly decrypted
// buffers as a success.
func TestS3DirectReadVecCutBodies(t *testing.T) {
	v := newS3Env(t)
	ctx := context.Background()
	s := v.s3(S3Options{})
	const size = 300_007
	plain := testutil.RandomBytes(21, size)
	f := v.libraryFile("cuts.bin", plain)
	wantGets := v.e.Counters().Requests[emulator.EndpointS3Get]
	for _, tc := range []struct {
		off   int64
		sizes []int
	}{
		{0, []int{size}},
		{15, []int{1, 16, 33, 100_000}},
		{16, []int{65_536, 65_536, 7}},
		{17, []int{40_001, 0, 99_999, 31}},
		{size - 1, []int{1}},
		{size - 40_003, []int{20_000, 20_003}},
		{123_457, []int{8191, 8193, 1}},
	} {
		for _, fault := range []emulator.Fault{emulator.FaultCut, emulator.FaultShort} {
			for _, breaks := range []int{2, directBodyAttempts} {
				name := fmt.Sprintf("off %d buffers %v fault %v breaks %d", tc.off, tc.sizes, fault, breaks)
				var bufs [][]byte
				total := 0
				for _, n := range tc.sizes {
					bufs = append(bufs, bytes.Repeat([]byte{0xee}, n))
					total += n
				}
				v.e.FailNext(emulator.EndpointS3Get, breaks, fault)
				sums := make([]uint32, len(bufs))
				err := s.ReadRangeDirectVecSum(ctx, f, tc.off, bufs, sums)
				if breaks >= directBodyAttempts {
					if !errors.Is(err, ErrShortBody) {
						t.Fatalf("%s: %v, want ErrShortBody", name, err)
					}
					wantGets += directBodyAttempts
				} else {
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					if got := bytes.Join(bufs, nil); !bytes.Equal(got, plain[tc.off:tc.off+int64(total)]) {
						t.Fatalf("%s: bytes differ", name)
					}
					// The checksums, computed piece by piece across resumed bodies, are the buffers'.
					for i, b := range bufs {
						if want := crc32.Checksum(b, castagnoli); sums[i] != want {
							t.Fatalf("%s: buffer %d sum %08x, want %08x", name, i, sums[i], want)
						}
					}
					wantGets += int64(breaks + 1)
				}
				// The emulator counts a request as it arrives: every attempt of a call that has
				// returned was answered, so it is counted already.
				if got := v.e.Counters().Requests[emulator.EndpointS3Get]; got != wantGets {
					t.Fatalf("%s: %d S3 GETs in all, want %d", name, got, wantGets)
				}
			}
		}
	}
}

// waitGets waits until the emulator has counted want S3 GETs in all, and fails if it counts more.
