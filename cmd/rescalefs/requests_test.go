package main

import "testing"

// TestRequestPlan: storage reads go one block per request with 256 MiB in flight whatever the block
// size, so every --block-size fits the default --memory (32 requests of 16 MiB did not: a mount with
// --block-size 16MiB was refused); /contents/ keeps 16 requests of 16 MiB; --parallel overrides the
// count.
func TestRequestPlan(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		block    int64
		direct   bool
		parallel int
		want     requestPlan
	}{
		{8 * mib, true, 0, requestPlan{parallel: 32, size: 8 * mib, splitMisses: storageSplitMisses}},
		{16 * mib, true, 0, requestPlan{parallel: 16, size: 16 * mib, splitMisses: storageSplitMisses}},
		{4 * mib, true, 0, requestPlan{parallel: 64, size: 4 * mib, splitMisses: storageSplitMisses}},
		{8 * mib, false, 0, requestPlan{parallel: 16, size: 16 * mib}},
		{16 * mib, false, 0, requestPlan{parallel: 16, size: 16 * mib}},
		{8 * mib, true, 20, requestPlan{parallel: 20, size: 8 * mib, splitMisses: storageSplitMisses}},
		{8 * mib, false, 8, requestPlan{parallel: 8, size: 16 * mib}},
	}
	for _, tc := range tests {
		c := mountConfig{blockSize: tc.block, directReads: tc.direct, parallel: tc.parallel, memory: 512 * mib}
		got := c.requests()
		if got != tc.want {
			t.Errorf("block %d MiB, direct %v, --parallel %d: %+v, want %+v", tc.block/mib, tc.direct, tc.parallel, got, tc.want)
		}
		if tc.parallel == 0 {
			if _, err := splitMemory(c.memory, got); err != nil {
				t.Errorf("block %d MiB, direct %v, defaults: %v", tc.block/mib, tc.direct, err)
			}
		}
	}
}
