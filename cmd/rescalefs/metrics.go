package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/download"
	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// --metrics serves the mount's counters in the Prometheus text format, for operators. It is opt-in and
// loopback only: the counters name endpoints and volumes, not secrets, but a mount is no place for a
// network service; a Prometheus on another machine scrapes through its own exporter or an ssh tunnel.
//
// The values are read at scrape time from the counters the mount keeps anyway (cache.Stats, the status
// snapshot, the API client's health, the transport observer), so serving metrics costs nothing between
// scrapes. Up/down and the last answer come from the API client's health, as in `rescalefs status`.

// checkMetricsAddr refuses anything but a loopback address with a port.
func checkMetricsAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics %q: want 127.0.0.1:PORT", addr)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--metrics %q: only a loopback address (127.0.0.1:PORT or [::1]:PORT) is allowed", addr)
}

// metricsSource is what the collector reads at each scrape.
type metricsSource struct {
	obs     *platformObserver            // requests by endpoint and status
	health  func() remote.HealthSnapshot // the API client's view: up/down, last answer
	cache   *cache.Cache
	mounted *atomic.Pointer[rfs.Mounted] // nil until mounted
	dl      *download.Downloader         // --auto-download's; nil without it (then no such series)
}

// metricsStopWait bounds how long the shutdown waits for scrapes in progress.
const metricsStopWait = 5 * time.Second

// serveMetrics listens on addr now (so a taken port fails the mount before anything is mounted) and
// serves until the returned stop is called.
func serveMetrics(addr string, src metricsSource, logger *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(&mountCollector{src: src},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("metrics server stopped", "err", err)
		}
	}()
	logger.Info("serving metrics", "addr", "http://"+ln.Addr().String()+"/metrics")
	return func() {
		// Shutdown lets a scrape in progress finish (it reads parts the owner closes next); a scraper
		// that hangs on is cut off.
		ctx, cancel := context.WithTimeout(context.Background(), metricsStopWait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}, nil
}

var (
	descCacheHits      = prometheus.NewDesc("rescalefs_cache_hits_total", "Blocks served without a new fetch, by where they came from.", []string{"tier"}, nil)
	descCacheMisses    = prometheus.NewDesc("rescalefs_cache_misses_total", "Blocks that started a fetch for a reader.", nil, nil)
	descCacheBytes     = prometheus.NewDesc("rescalefs_cache_bytes", "Bytes held by the block cache, by tier.", []string{"tier"}, nil)
	descFetchRequests  = prometheus.NewDesc("rescalefs_fetch_requests_total", "Ranged block fetches sent, retries included.", nil, nil)
	descFetchRetries   = prometheus.NewDesc("rescalefs_fetch_retries_total", "Ranged block fetches that were retries.", nil, nil)
	descFetchErrors    = prometheus.NewDesc("rescalefs_fetch_errors_total", "Block fetches that failed after their retries.", nil, nil)
	descFetchedBytes   = prometheus.NewDesc("rescalefs_fetched_bytes_total", "Bytes fetched from the platform or storage into the cache.", nil, nil)
	descFetchInFlight  = prometheus.NewDesc("rescalefs_fetches_in_flight", "Ranged fetches in flight now.", nil, nil)
	descOpens          = prometheus.NewDesc("rescalefs_opens_total", "Files opened for reading.", nil, nil)
	descReads          = prometheus.NewDesc("rescalefs_reads_total", "Read requests served to programs.", nil, nil)
	descReadBytes      = prometheus.NewDesc("rescalefs_read_bytes_total", "Bytes served to programs.", nil, nil)
	descReadErrors     = prometheus.NewDesc("rescalefs_read_errors_total", "Read requests that failed.", nil, nil)
	descOpenFiles      = prometheus.NewDesc("rescalefs_open_files", "Files open for reading now, running jobs' live files included.", nil, nil)
	descJobs           = prometheus.NewDesc("rescalefs_jobs", "Jobs the mount lists.", nil, nil)
	descUploads        = prometheus.NewDesc("rescalefs_uploads", "Uploads by state; settling: closed in uploads/ but not queued yet.", []string{"state"}, nil)
	descRequests       = prometheus.NewDesc("rescalefs_platform_requests_total", "HTTP exchanges with the platform by endpoint and status code (\"error\": no answer).", []string{"endpoint", "code"}, nil)
	descThrottled      = prometheus.NewDesc("rescalefs_platform_throttled_total", "Answers 429 Too Many Requests from the platform.", nil, nil)
	descPlatformUp     = prometheus.NewDesc("rescalefs_platform_up", "0 when a platform call ran out of its budget with no answer since, else 1 (any answer, even a 5xx, counts), as rescalefs status says.", nil, nil)
	descLastAnswerTime = prometheus.NewDesc("rescalefs_platform_last_answer_timestamp_seconds", "When the platform last answered, with any status (unix time; 0: never).", nil, nil)

	// The disk cache's health, as the "disk cache:" line of rescalefs status says it (diskline.go).
	descDiskBlocks     = prometheus.NewDesc("rescalefs_cache_disk_blocks", "Cache files in the disk tier.", nil, nil)
	descDiskCorrupt    = prometheus.NewDesc("rescalefs_cache_disk_corrupt_total", "Disk cache files found corrupt when read (deleted and fetched again).", nil, nil)
	descDiskErrors     = prometheus.NewDesc("rescalefs_cache_disk_errors_total", "Blocks not stored on disk (a failed write, or no room beside files it cannot delete): served uncached.", nil, nil)
	descDiskStuckFiles = prometheus.NewDesc("rescalefs_cache_disk_stuck_files", "Disk cache files the mount failed to delete (a read-only or immutable folder?): their room stays used; retried.", nil, nil)
	descDiskStuckBytes = prometheus.NewDesc("rescalefs_cache_disk_stuck_bytes", "Bytes of the disk cache files the mount failed to delete.", nil, nil)
	descMismatches     = prometheus.NewDesc("rescalefs_checksum_mismatches_total", "Files read whole whose sha512 differed from the platform's.", nil, nil)
	descReadsWaiting   = prometheus.NewDesc("rescalefs_reads_waiting", "Reads blocked on a fetch from the platform now.", nil, nil)
	descKept           = prometheus.NewDesc("rescalefs_kept_files", "Files left in the library after a lost answer, not deleted: rescalefs status lists them.", nil, nil)

	// The API client's health beyond up/down, as the "platform calls:" line of rescalefs status says it.
	descCalls          = prometheus.NewDesc("rescalefs_platform_calls", "Platform calls in progress now, retries and waits included.", nil, nil)
	descCallsRetrying  = prometheus.NewDesc("rescalefs_platform_calls_retrying", "Platform calls waiting to retry after a failure now.", nil, nil)
	descCallsThrottled = prometheus.NewDesc("rescalefs_platform_calls_throttled", "Platform calls waiting out a 429 Too Many Requests now.", nil, nil)
	descGaveUp         = prometheus.NewDesc("rescalefs_platform_gave_up_total", "Platform calls that ran out of their time budget with no answer (a read fails with an I/O error).", nil, nil)

	// --auto-download's counters, as the "auto-download to" lines of rescalefs status show its jobs.
	descAutoJobs     = prometheus.NewDesc("rescalefs_auto_download_jobs", "Completed jobs the automatic downloads hold now, by state; failed: waiting to retry.", []string{"state"}, nil)
	descAutoDone     = prometheus.NewDesc("rescalefs_auto_download_jobs_done_total", "Jobs whose matching outputs were all downloaded (or found already there) into the download folder.", nil, nil)
	descAutoFailures = prometheus.NewDesc("rescalefs_auto_download_failures_total", "Job download attempts that failed (each retried with backoff; rescalefs status says why).", nil, nil)
	descAutoFiles    = prometheus.NewDesc("rescalefs_auto_download_files_total", "Files downloaded into the download folder (not those found already complete).", nil, nil)
	descAutoBytes    = prometheus.NewDesc("rescalefs_auto_download_bytes_total", "Bytes written into the download folder from the platform, files that failed their check included.", nil, nil)
)

// uploadStates are always reported, at 0 when empty, so a dashboard's series do not come and go.
var uploadStates = []upload.State{upload.StateQueued, upload.StateUploading, upload.StateRetrying, upload.StateFailed,
	upload.StateDone, upload.StateDamaged, upload.StateRejected}

// uploadGauges counts st's uploads by state, every state of uploadStates present, plus "settling".
func uploadGauges(st rfs.Status) map[string]int {
	out := map[string]int{"settling": len(st.Settling)}
	for _, s := range uploadStates {
		out[string(s)] = 0
	}
	for _, u := range st.Uploads {
		out[string(u.State)]++
	}
	return out
}

// mountCollector turns the mount's counters into metrics at scrape time.
type mountCollector struct{ src metricsSource }

func (c *mountCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCacheHits, descCacheMisses, descCacheBytes, descFetchRequests, descFetchRetries,
		descFetchErrors, descFetchedBytes, descFetchInFlight, descOpens, descReads, descReadBytes, descReadErrors, descOpenFiles,
		descJobs, descUploads, descRequests, descThrottled, descPlatformUp, descLastAnswerTime,
		descDiskBlocks, descDiskCorrupt, descDiskErrors, descDiskStuckFiles, descDiskStuckBytes, descMismatches, descReadsWaiting,
		descKept, descCalls, descCallsRetrying, descCallsThrottled, descGaveUp,
		descAutoJobs, descAutoDone, descAutoFailures, descAutoFiles, descAutoBytes} {
		ch <- d
	}
}

func (c *mountCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.src.cache != nil {
		s := c.src.cache.Stats()
		counter(descCacheHits, s.MemoryHits, "memory")
		counter(descCacheHits, s.DiskHits, "disk")
		counter(descCacheHits, s.ReadaheadHits, "readahead")
		counter(descCacheHits, s.WaitHits, "inflight")
		counter(descCacheMisses, s.Misses)
		gauge(descCacheBytes, float64(s.MemoryBytes), "memory")
		gauge(descCacheBytes, float64(s.DiskBytes), "disk")
		gauge(descCacheBytes, float64(s.ReadaheadBytes), "readahead")
		counter(descFetchRequests, s.Requests)
		counter(descFetchRetries, s.Retries)
		counter(descFetchErrors, s.FetchErrors)
		counter(descFetchedBytes, s.BytesFetched)
		gauge(descFetchInFlight, float64(s.InFlight))
		gauge(descDiskBlocks, float64(s.DiskBlocks))
		counter(descDiskCorrupt, s.DiskCorrupt)
		counter(descDiskErrors, s.DiskErrors)
		gauge(descDiskStuckFiles, float64(s.DiskStuckFiles))
		gauge(descDiskStuckBytes, float64(s.DiskStuckBytes))
		counter(descMismatches, s.ChecksumMismatches)
		gauge(descReadsWaiting, float64(s.ReadsWaiting))
	}
	if m := c.src.mounted.Load(); m != nil {
		st := m.Status()
		counter(descOpens, st.Transfers.Opens)
		counter(descReads, st.Transfers.Reads)
		counter(descReadBytes, st.Transfers.BytesRead)
		counter(descReadErrors, st.Transfers.ReadErrors)
		gauge(descOpenFiles, float64(len(st.Downloads)))
		gauge(descJobs, float64(st.Jobs))
		for state, n := range uploadGauges(st) {
			gauge(descUploads, float64(n), state)
		}
		gauge(descKept, float64(len(st.Kept)))
	}
	var throttled int64
	for k, n := range c.src.obs.requestCounts() {
		counter(descRequests, n, k.Endpoint, k.Code)
		if k.Code == "429" {
			throttled += n
		}
	}
	counter(descThrottled, throttled)
	h := c.src.health()
	up := 1.0
	if h.Down {
		up = 0
	}
	gauge(descPlatformUp, up)
	last := 0.0
	if !h.LastAnswer.IsZero() {
		last = float64(h.LastAnswer.UnixNano()) / 1e9
	}
	gauge(descLastAnswerTime, last)
	gauge(descCalls, float64(h.Calls))
	gauge(descCallsRetrying, float64(h.Retrying))
	gauge(descCallsThrottled, float64(h.Throttled))
	counter(descGaveUp, h.GaveUp)
	if c.src.dl != nil {
		t := c.src.dl.Totals()
		// Every state at 0 too, so an alert on failed jobs has a series before the first failure.
		gauge(descAutoJobs, float64(t.Queued), "queued")
		gauge(descAutoJobs, float64(t.Downloading), "downloading")
		gauge(descAutoJobs, float64(t.Failed), "failed")
		counter(descAutoDone, t.JobsDone)
		counter(descAutoFailures, t.Failures)
		counter(descAutoFiles, t.Files)
		counter(descAutoBytes, t.Bytes)
	}
}
