package remote

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// TestDirectSourceStalledStorageFallsBack: storage that accepts requests but never answers, the API
// fine. The direct path's attempts outlast the read's one budget (issue 9), so that read fails; the
// file must then go to /contents/ (issue 13's per-file fallback) instead of spending every later
// read's budget on the same silent storage: before, no read of the file ever succeeded.
func TestDirectSourceStalledStorageFallsBack(t *testing.T) {
	// A header timeout far below the budget, and more storage attempts than fit in it. The header
	// timeout also times the healthy /contents/ answer the test counts: at 50 ms a loaded machine
	// answered it late once, and it was asked again.
	v := newS3EnvPolicy(t, Policy{HeaderTimeout: 150 * time.Millisecond, Budget: 600 * time.Millisecond, FailureMemory: time.Millisecond})
	e, c := v.e, v.c
	plain := testutil.RandomBytes(31, 300_000)
	f := v.libraryFile("stalled.bin", plain)
	logs := &logCounter{}
	d := NewDirectSource(c, DirectSourceOptions{Logger: slog.New(logs), S3: S3Options{MaxAttempts: 20, MaxBackoff: time.Millisecond}})
	d.Register(f)
	e.SetFaults(emulator.Faults{StallHeadersRate: 1, Endpoints: []string{emulator.EndpointS3Get}})
	ctx := context.Background()
	got := make([]byte, 4096)
	if err := d.ReadRange(ctx, f.ID, 1000, got); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first read: %v, want ErrUnavailable (the storage's attempts outlast the budget)", err)
	}
	waitUntil := time.Now().Add(10 * time.Second)
	for c.failures.get(f.ID, c.policy.FailureMemory) != nil { // the failure memory (1 ms) has passed
		if time.Now().After(waitUntil) {
			t.Fatal("the failure memory never passed")
		}
	}
	e.ResetCounters()
	if err := d.ReadRange(ctx, f.ID, 2000, got); err != nil || !bytes.Equal(got, plain[2000:2000+len(got)]) {
		t.Fatalf("second read: %v, want the bytes through /contents/", err)
	}
	// (Storage GETs are not counted here: one of the first read's attempts may reach the emulator
	// only after the reset.)
	if cn := e.Counters(); cn.Requests[emulator.EndpointContents] != 1 {
		t.Fatalf("second read went %v, want one /contents/ request", cn.Requests)
	}
	if n := logs.count("direct storage read failed"); n != 1 {
		t.Fatalf("%d log lines, want 1", n)
	}
}
