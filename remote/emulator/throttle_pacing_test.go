package emulator

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/internal/testutil"
)

// TestPacedAnswerEndsWhenTheClientLeaves: a response paced to the bandwidth cap stops when its client
// goes away. The pacing writes a quantum (at least 4 KiB) and sleeps until the cap allows the next;
// before, that sleep could not be interrupted, so a handler whose client had left slept out the
// quantum and wrote the next one into the dead connection before it noticed. At the rate below a
// quantum is 32 s of sleep: only a wait that ends with its client ends within the bound.
func TestPacedAnswerEndsWhenTheClientLeaves(t *testing.T) {
	const (
		rate    = 128     // bytes/s
		quantum = 4096    // the pacing's smallest write, sent before its first sleep
		size    = 1 << 20 // more than two hours of body at the rate
	)
	h := newHarness(t, Options{})
	j := mustAddJob(t, h.e, JobSpec{Files: []FileSpec{{RelativePath: "big", Size: size}}})
	h.e.ResetCounters()
	h.e.SetFaults(Faults{Bandwidth: rate})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/api/v2/files/"+j.Files[0].ID+"/contents/", nil)
	req.Header.Set("Authorization", "Token "+h.e.APIKey())
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, quantum)); err != nil {
		t.Fatal(err)
	}
	if h.e.Serving() != 1 {
		t.Fatalf("%d requests being served, want the paced one", h.e.Serving())
	}
	cancel() // the client leaves mid-body: the transport closes the connection
	resp.Body.Close()

	testutil.Eventually(t, 10*time.Second, "the paced answer to end with its client", func() bool { return h.e.Serving() == 0 })
	c := h.e.Counters()
	if c.Requests[EndpointContents] != 1 || c.Statuses[EndpointContents][http.StatusOK] != 1 {
		t.Fatalf("requests %d, statuses %v", c.Requests[EndpointContents], c.Statuses[EndpointContents])
	}
	// What went out is what the client read: nothing was written after it left.
	if out := c.BytesOut[EndpointContents]; out != quantum {
		t.Fatalf("%d body bytes counted out, the client read %d of %d before it left", out, quantum, size)
	}
}
