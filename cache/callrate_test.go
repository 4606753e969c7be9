package cache

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

// httpSource reads ranges of one object from an HTTP server, as the real storage client does: the
// request carries the read's context.
type httpSource struct {
	url    string
	client *http.Client
}

func (h httpSource) ReadRange(ctx context.Context, id string, off int64, p []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+int64(len(p))-1))
	resp, err := h.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return fmt.Errorf("status %s", resp.Status)
	}
	_, err = io.ReadFull(resp.Body, p)
	return err
}

// A call is timed from its response's first byte: a link with a long latency but bytes to spare is
// fast. Timed from the call's start, the 2 MiB behind 300 ms of latency came at under 7 MiB/s, and 32
// slots of that are slow.
func TestCallRateFromFirstByte(t *testing.T) {
	const size = 2 << 20
	body := make([]byte, size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond) // the request's latency, before any byte
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.WriteHeader(http.StatusPartialContent)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	opts := testOptions(t)
	opts.BlockSize, opts.MaxRequestSize, opts.MinRequestSize = size, size, size
	opts.Parallel, opts.SplitMisses, opts.Readahead = 32, 0, -1
	c := newTestCache(t, httpSource{url: srv.URL, client: srv.Client()}, opts)
	if c.fastLink() {
		t.Fatal("fast before any call was timed")
	}
	if _, err := c.ReadAt(context.Background(), Object{ID: "big", Size: size}, make([]byte, 4096), 0); err != nil {
		t.Fatal(err)
	}
	if !c.fastLink() {
		t.Fatalf("timed at %d MiB/s: not fast (32 slots need %d MiB/s each)", c.callRate.Load()>>20, fastLinkRate/32>>20)
	}
}
