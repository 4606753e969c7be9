package main

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/remote"
)

// TestMountLifeStopsMetrics: the owner of a mount's parts stops the --metrics server in its close
// step, after letting a scrape in progress finish and before the lock (the last part) is released. The
// server used to be stopped by a defer of the mount command, after the owner had closed what its
// scrapes read.
func TestMountLifeStopsMetrics(t *testing.T) {
	var logBuf syncBuffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	l := newMountLife(logger)

	var mu sync.Mutex // guards events
	var events []string
	event := func(e string) { mu.Lock(); events = append(events, e); mu.Unlock() }
	inScrape, release := make(chan struct{}), make(chan struct{})
	var scrapes atomic.Int32
	health := func() remote.HealthSnapshot {
		if scrapes.Add(1) == 1 {
			close(inScrape)
			<-release
			event("scrape done")
		}
		return remote.HealthSnapshot{}
	}
	var mounted atomic.Pointer[rfs.Mounted]
	stop, err := serveMetrics("127.0.0.1:0", metricsSource{obs: newPlatformObserver(http.DefaultTransport, ""),
		health: health, mounted: &mounted}, logger)
	if err != nil {
		t.Fatal(err)
	}
	l.metrics = stop
	l.unlock = func() { event("unlock") }
	m := regexp.MustCompile(`addr=http://(127\.0\.0\.1:\d+)/metrics`).FindStringSubmatch(logBuf.String())
	if m == nil {
		stop()
		t.Fatalf("no address in the log: %s", logBuf.String())
	}
	addr := m[1]

	scraped := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			scraped <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		scraped <- resp.Status + "\n" + string(b)
	}()
	<-inScrape
	ended := make(chan struct{})
	go func() { l.end(); close(ended) }()
	// The owner stops the server: new connections are refused at once, the scrape in progress goes on.
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	<-ended
	if got := <-scraped; !strings.HasPrefix(got, "200 OK") || !strings.Contains(got, "rescalefs_platform_up 1") {
		t.Errorf("the scrape in progress did not finish: %.200s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"scrape done", "unlock"}; !slices.Equal(events, want) {
		t.Errorf("shutdown events %v, want %v", events, want)
	}
}
