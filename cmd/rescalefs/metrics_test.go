package main

import (
	"bytes"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// syncBuffer is written by a process or goroutine and read by the test while it writes.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// metricValue is the value of the family's series whose labels include want (nil: the only series).
func metricValue(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s", name)
	}
	var sum float64
	var found bool
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	if !found {
		t.Fatalf("no series of %s with %v", name, want)
	}
	return sum
}

// mountWithMetrics mounts the platform with the real binary in the foreground with --metrics on a
// loopback port the kernel picks, and waits until it is mounted and serving. It returns the mountpoint,
// the metrics' URL (from the log) and the process's stderr, logged if the test fails. flags are added
// to the mount's.
func mountWithMetrics(t *testing.T, emu *emulator.Emulator, url string, flags ...string) (mnt, metricsURL string, stderr *syncBuffer) {
	t.Helper()
	mnt = t.TempDir()
	noMountsLeftUnder(t, mnt)
	args := append([]string{"mount", "--foreground", "--poll", "1s", "--metrics", "127.0.0.1:0"}, flags...)
	cmd := rescalefsCmd(t, []string{"RESCALE_API_KEY=" + emu.APIKey(), "RESCALE_API_URL=" + url}, append(args, mnt)...)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := waitInBackground(t, cmd)
	t.Cleanup(func() {
		if _, ok := mountedAt(mnt); ok {
			_ = exec.Command("fusermount3", "-u", mnt).Run()
		}
		<-done
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	})
	addrRE := regexp.MustCompile(`msg="serving metrics" addr=(http://127\.0\.0\.1:\d+/metrics)`)
	waitFor(t, func() bool {
		m := addrRE.FindStringSubmatch(stderr.String())
		if m != nil {
			metricsURL = m[1]
		}
		fstype, ok := mountedAt(mnt)
		return m != nil && ok && fstype == "fuse.rescalefs"
	})
	return mnt, metricsURL, stderr
}

// scrapeMetrics GETs metricsURL and parses it with Prometheus's own text parser.
func scrapeMetrics(t *testing.T, metricsURL string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET %s: %s, %s", metricsURL, resp.Status, resp.Header.Get("Content-Type"))
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the metrics do not parse as Prometheus text: %v", err)
	}
	return fams
}

// TestMetricsEndpoint mounts with --metrics 127.0.0.1:0, reads a file, uploads one and meets a 429,
// then scrapes /metrics and parses it with Prometheus's own text parser; the counts agree with what the
// emulator saw on the wire.
func TestMetricsEndpoint(t *testing.T) {
	emu, url := watchPlatform(t)
	emu.FailNext(emulator.EndpointJobs, 1, emulator.Fault429)
	mnt, metricsURL, stderr := mountWithMetrics(t, emu, url)

	b, err := os.ReadFile(filepath.Join(mnt, "jobs", "Done1", "out", "x.dat"))
	if err != nil || len(b) != 5000 {
		t.Fatalf("read: %d bytes, %v", len(b), err)
	}
	src := filepath.Join(t.TempDir(), "metered.txt")
	if err := os.WriteFile(src, []byte("counted\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	copyInto(t, src, filepath.Join(mnt, "uploads"))

	var fams map[string]*dto.MetricFamily
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams = scrapeMetrics(t, metricsURL)
		if metricValue(t, fams, "rescalefs_uploads", map[string]string{"state": "done"}) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the upload never showed as done in the metrics; stderr:\n%s", stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	emuTotal := func() (n float64) {
		for _, c := range emu.Counters().Requests {
			n += float64(c)
		}
		return n
	}
	before := emuTotal()
	fams = scrapeMetrics(t, metricsURL)
	after := emuTotal()

	if v := metricValue(t, fams, "rescalefs_read_bytes_total", nil); v < 5000 {
		t.Errorf("read bytes %v, want at least 5000", v)
	}
	if v := metricValue(t, fams, "rescalefs_fetched_bytes_total", nil); v < 5000 {
		t.Errorf("fetched bytes %v, want at least 5000", v)
	}
	if v := metricValue(t, fams, "rescalefs_platform_throttled_total", nil); v != 1 {
		t.Errorf("throttled %v, want the one injected 429", v)
	}
	if v := metricValue(t, fams, "rescalefs_platform_requests_total", map[string]string{"endpoint": "/api/v2/jobs/", "code": "429"}); v != 1 {
		t.Errorf("jobs list 429s %v, want 1", v)
	}
	if v := metricValue(t, fams, "rescalefs_platform_requests_total", map[string]string{"endpoint": "/api/v2/jobs/{id}/files/", "code": "200"}); v < 1 {
		t.Errorf("job file listings %v, want at least 1 (the ids are templated)", v)
	}
	if v := metricValue(t, fams, "rescalefs_platform_up", nil); v != 1 {
		t.Errorf("platform_up %v", v)
	}
	if v := metricValue(t, fams, "rescalefs_platform_last_answer_timestamp_seconds", nil); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last answer %v, want within the last minute", v)
	}
	for _, tier := range []string{"memory", "disk", "readahead", "inflight"} {
		metricValue(t, fams, "rescalefs_cache_hits_total", map[string]string{"tier": tier})
	}
	// Storage exchanges (the read of x.dat goes straight to storage) count too, although the storage
	// clients have a connection pool of their own.
	var emuStorage float64
	for ep, n := range emu.Counters().Requests {
		if strings.HasPrefix(ep, "s3.") {
			emuStorage += float64(n)
		}
	}
	if v := metricValue(t, fams, "rescalefs_platform_requests_total", map[string]string{"endpoint": "storage"}); v < 1 || v > emuStorage {
		t.Errorf("storage exchanges %v, want at least 1 and at most the emulator's %v", v, emuStorage)
	}
	// What the mount counted is what the emulator served: every exchange, and no other client.
	ours := metricValue(t, fams, "rescalefs_platform_requests_total", map[string]string{})
	if ours > after || ours < before-16 {
		t.Errorf("the mount counted %v exchanges; the emulator served %v..%v", ours, before, after)
	}
	if fams["go_goroutines"] == nil || fams["process_resident_memory_bytes"] == nil {
		t.Error("no Go runtime or process metrics")
	}
	if strings.Contains(stderr.String(), emu.APIKey()) {
		t.Fatal("the log shows the API key")
	}
}

func TestMetricsAddressIsLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:9464", ":9464", "192.168.1.5:9464", "example.com:9464", "127.0.0.1"} {
		code, _, stderr := runCmd(t, nil, "mount", "--metrics", addr, "x")
		if code != exitUsage || !strings.Contains(stderr, "--metrics") {
			t.Errorf("--metrics %s: code %d, stderr %q", addr, code, stderr)
		}
	}
	for _, addr := range []string{"127.0.0.1:9464", "[::1]:9464", "127.0.0.1:0"} {
		if err := checkMetricsAddr(addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

// TestMetricsUploadStates: every upload of the status is counted under its own state, the rejected
// ones (issue 8's refusals for good) included, so rescalefs_uploads summed over its states is what
// `rescalefs status` lists; and every state's series is there even at 0, rejected too, so a
// dashboard's alert on it has a series to watch before the first refusal.
func TestMetricsUploadStates(t *testing.T) {
	zero := map[string]int{"queued": 0, "uploading": 0, "retrying": 0, "failed": 0, "done": 0, "damaged": 0,
		"rejected": 0, "settling": 0}
	for _, tc := range []struct {
		name   string
		states []upload.State
		want   map[string]int
	}{
		{"none", nil, map[string]int{}},
		{"rejected among others", []upload.State{upload.StateQueued, upload.StateRejected, upload.StateRejected, upload.StateDone},
			map[string]int{"queued": 1, "done": 1, "rejected": 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := rfs.Status{}
			for i, s := range tc.states {
				st.Uploads = append(st.Uploads, upload.Status{ID: strconv.Itoa(i), State: s})
			}
			want := maps.Clone(zero)
			maps.Copy(want, tc.want)
			if got := uploadGauges(st); !maps.Equal(got, want) {
				t.Fatalf("upload gauges %v, want %v", got, want)
			}
		})
	}
}

// TestMetricsAgreeWithStatusWhilePlatformAnswers503: with the platform answering 503 to everything for
// a while, `rescalefs status` (the API client's health: any answer is an answer) and --metrics say the
// same thing about whether it is up and when it last answered. Metrics used to take "up" from the last
// status code (0 on a 503) while status said "answering", and the status file carried two "last
// answered" fields.
func TestMetricsAgreeWithStatusWhilePlatformAnswers503(t *testing.T) {
	emu, url := watchPlatform(t)
	mnt, metricsURL, _ := mountWithMetrics(t, emu, url)
	// Cleanups run last first: this one before mountWithMetrics' unmount.
	t.Cleanup(func() { emu.SetFaults(emulator.Faults{}) }) // nothing to clear the FailNext queue: the unmount needs no platform
	statusPath := filepath.Join(mnt, ".rescalefs", "status")
	readStatus := func() (mountState, []byte) {
		t.Helper()
		b, err := os.ReadFile(statusPath)
		if err != nil {
			t.Fatal(err)
		}
		st, err := readMountStatus(statusPath)
		if err != nil || st.Status.Platform == nil || st.Platform == nil {
			t.Fatalf("status: %v, %+v", err, st)
		}
		return st, b
	}

	emu.FailNext("", 1<<20, emulator.Fault503)
	var fams map[string]*dto.MetricFamily
	waitFor(t, func() bool {
		fams = scrapeMetrics(t, metricsURL)
		var n float64
		for _, m := range fams["rescalefs_platform_requests_total"].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == "503" {
					n += m.GetCounter().GetValue()
				}
			}
		}
		return n >= 5
	})
	// The scrape between two reads of the status file: its values lie between theirs (the client's
	// health may only change in between if a call runs out of its budget just then: read again).
	var before, after mountState
	var raw []byte
	waitFor(t, func() bool {
		before, raw = readStatus()
		fams = scrapeMetrics(t, metricsURL)
		after, _ = readStatus()
		return before.Status.Platform.Down == after.Status.Platform.Down
	})
	wantUp := 1.0
	if after.Status.Platform.Down {
		wantUp = 0
	}
	if v := metricValue(t, fams, "rescalefs_platform_up", nil); v != wantUp {
		t.Errorf("platform_up %v; status says down=%v", v, after.Status.Platform.Down)
	}
	last := metricValue(t, fams, "rescalefs_platform_last_answer_timestamp_seconds", nil)
	lo, hi := float64(before.Status.Platform.LastAnswer.UnixNano())/1e9, float64(after.Status.Platform.LastAnswer.UnixNano())/1e9
	if before.Status.Platform.LastAnswer.IsZero() || last < lo || last > hi {
		t.Errorf("metrics' last answer %v; status's %v then %v", last, lo, hi)
	}
	var printed bytes.Buffer
	printStatus(&printed, mnt, after, false)
	if !strings.Contains(printed.String(), "platform calls: answering") && wantUp == 1 {
		t.Errorf("status does not say answering while metrics say up:\n%s", printed.String())
	}
	// One "last answer" in the status file: the client's, not a second one from the transport.
	if n := strings.Count(string(raw), `"lastAnswer`); n != 1 {
		t.Errorf("the status file has %d last-answer fields, want 1:\n%s", n, raw)
	}
}

// serveTestMetrics serves src's metrics on a loopback port the kernel picks until the test ends, and
// returns their URL.
func serveTestMetrics(t *testing.T, src metricsSource) string {
	t.Helper()
	var logBuf syncBuffer
	stop, err := serveMetrics("127.0.0.1:0", src, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	m := regexp.MustCompile(`addr=(http://127\.0\.0\.1:\d+/metrics)`).FindStringSubmatch(logBuf.String())
	if m == nil {
		t.Fatalf("no address in the log: %s", logBuf.String())
	}
	return m[1]
}

// TestMetricsSayDiskCacheHealth: the disk cache's health that `rescalefs status` shows in its "disk
// cache:" line is in the metrics too, driven for real: block files damaged (the mount finds them
// corrupt and deletes them) in folders made immutable (it cannot: they are stuck, and the blocks
// fetched again cannot be stored). The metrics used to have none of it.
func TestMetricsSayDiskCacheHealth(t *testing.T) {
	env, read := diskCacheEnv(t)
	var mounted atomic.Pointer[rfs.Mounted]
	mounted.Store(env.Mount)
	metricsURL := serveTestMetrics(t, metricsSource{obs: newPlatformObserver(http.DefaultTransport, ""),
		health: env.Client.Health, cache: env.Cache, mounted: &mounted})
	diskHealth := func(fams map[string]*dto.MetricFamily) [4]float64 {
		t.Helper()
		return [4]float64{metricValue(t, fams, "rescalefs_cache_disk_corrupt_total", nil),
			metricValue(t, fams, "rescalefs_cache_disk_errors_total", nil),
			metricValue(t, fams, "rescalefs_cache_disk_stuck_files", nil),
			metricValue(t, fams, "rescalefs_cache_disk_stuck_bytes", nil)}
	}

	// The disk tier may still be writing the last blocks: the scrape lies between the two reads.
	before := env.Cache.Stats().DiskBlocks
	fams := scrapeMetrics(t, metricsURL)
	after := env.Cache.Stats().DiskBlocks
	if got := diskHealth(fams); got != [4]float64{} {
		t.Errorf("a healthy disk cache: corrupt, errors, stuck files and bytes %v, want all 0", got)
	}
	if blocks := metricValue(t, fams, "rescalefs_cache_disk_blocks", nil); blocks < 2 || blocks < float64(before) || blocks > float64(after) {
		t.Errorf("disk blocks %v; the cache says %d then %d", blocks, before, after)
	}
	for _, name := range []string{"rescalefs_cache_disk_corrupt_total", "rescalefs_cache_disk_errors_total"} {
		if typ := fams[name].GetType(); typ != dto.MetricType_COUNTER {
			t.Errorf("%s is a %v, want a counter", name, typ)
		}
	}
	for _, name := range []string{"rescalefs_cache_disk_stuck_files", "rescalefs_cache_disk_stuck_bytes", "rescalefs_cache_disk_blocks"} {
		if typ := fams[name].GetType(); typ != dto.MetricType_GAUGE {
			t.Errorf("%s is a %v, want a gauge", name, typ)
		}
	}

	// Nothing waits, nothing was kept, no file failed its checksum: the series are there at 0.
	for _, name := range []string{"rescalefs_reads_waiting", "rescalefs_kept_files", "rescalefs_checksum_mismatches_total"} {
		if v := metricValue(t, fams, name, nil); v != 0 {
			t.Errorf("%s %v, want 0", name, v)
		}
	}

	damaged, damagedBytes := damageDiskCache(t, env, read)
	// Every damaged file was found corrupt and is stuck; every block fetched again could not be stored.
	want := [4]float64{float64(damaged), float64(damaged), float64(damaged), float64(damagedBytes)}
	if got := diskHealth(scrapeMetrics(t, metricsURL)); got != want {
		t.Errorf("corrupt, errors, stuck files and bytes %v, want %v", got, want)
	}
}

// TestMetricsSayPlatformCalls: the API client's health that `rescalefs status` shows beyond up/down
// (calls in progress, retrying, throttled; calls given up) is in the metrics, each from its own field;
// a pedantic registry checks that every metric collected was described.
func TestMetricsSayPlatformCalls(t *testing.T) {
	h := remote.HealthSnapshot{Calls: 7, Retrying: 3, Throttled: 2, GaveUp: 5}
	var mounted atomic.Pointer[rfs.Mounted]
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&mountCollector{src: metricsSource{obs: newPlatformObserver(http.DefaultTransport, ""),
		health: func() remote.HealthSnapshot { return h }, mounted: &mounted}})
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams := map[string]*dto.MetricFamily{}
	for _, f := range got {
		fams[f.GetName()] = f
	}
	for name, want := range map[string]float64{"rescalefs_platform_calls": 7, "rescalefs_platform_calls_retrying": 3,
		"rescalefs_platform_calls_throttled": 2, "rescalefs_platform_gave_up_total": 5} {
		if v := metricValue(t, fams, name, nil); v != want {
			t.Errorf("%s %v, want %v", name, v, want)
		}
	}
}

// TestMetricsSayAutoDownloads: --auto-download's work is in the metrics, driven for real. A completed
// job's folder is blocked by a file of its name (its attempts fail, and are retried), another job
// completes while mounted and is downloaded; once the block is removed both end done. The jobs done,
// failed attempts, files and bytes counted are those downloaded, and the failures those logged. The
// metrics used to have nothing of the automatic downloads.
func TestMetricsSayAutoDownloads(t *testing.T) {
	emu, url := watchPlatform(t) // Done1 (out/x.dat, 5000 bytes) completed; Live1 runs for an hour
	soon, err := emu.AddJob(emulator.JobSpec{ID: "Soon1", Name: "completes while mounted", RunFor: 2 * time.Second,
		Files: []emulator.FileSpec{{RelativePath: "log.txt", Size: 5000, Seed: 1}, {RelativePath: "case/result.bin", Size: 3<<20 + 7, Seed: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	blocker := filepath.Join(dest, "Done1")
	if err := os.WriteFile(blocker, []byte("not a folder"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, metricsURL, stderr := mountWithMetrics(t, emu, url, "--auto-download", dest)

	// Done1 fails (and is retried) while Soon1 runs, then downloads.
	var fams map[string]*dto.MetricFamily
	waitFor(t, func() bool {
		fams = scrapeMetrics(t, metricsURL)
		return metricValue(t, fams, "rescalefs_auto_download_failures_total", nil) >= 1 &&
			metricValue(t, fams, "rescalefs_auto_download_jobs", map[string]string{"state": "failed"}) == 1
	})
	if v := metricValue(t, fams, "rescalefs_auto_download_jobs_done_total", nil); v > 1 {
		t.Errorf("jobs done %v while Done1 is blocked, want at most Soon1", v)
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		fams = scrapeMetrics(t, metricsURL)
		return metricValue(t, fams, "rescalefs_auto_download_jobs_done_total", nil) == 2
	})

	for _, f := range append([]emulator.FileInfo{{JobID: "Done1", RelativePath: "out/x.dat", Size: 5000}}, soon.Files...) {
		fi, err := os.Stat(filepath.Join(dest, f.JobID, filepath.FromSlash(f.RelativePath)))
		if err != nil || fi.Size() != f.Size {
			t.Fatalf("%s/%s not downloaded: %v", f.JobID, f.RelativePath, err)
		}
	}
	// What is in the folder (the running job gained outputs of its own since AddJob), less the
	// downloader's bookkeeping.
	var files, size int64
	err = filepath.WalkDir(dest, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".rescalefs-") {
			return err
		}
		fi, err := d.Info()
		files, size = files+1, size+fi.Size()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(t, fams, "rescalefs_auto_download_files_total", nil); v != float64(files) {
		t.Errorf("files downloaded %v, want %d", v, files)
	}
	if v := metricValue(t, fams, "rescalefs_auto_download_bytes_total", nil); v != float64(size) {
		t.Errorf("bytes downloaded %v, want %d", v, size)
	}
	// Over the wire: the bytes downloaded came from the platform's contents or storage answers.
	var served int64
	for ep, n := range emu.Counters().BytesOut {
		if ep == emulator.EndpointContents || strings.HasPrefix(ep, "s3.") {
			served += n
		}
	}
	if served < size {
		t.Errorf("the emulator served %d bytes of file contents; the downloads wrote %d", served, size)
	}
	logged := strings.Count(stderr.String(), "job incomplete; will try again")
	if v := metricValue(t, fams, "rescalefs_auto_download_failures_total", nil); v < 1 || v != float64(logged) {
		t.Errorf("failures %v; the log says %d", v, logged)
	}
	for _, state := range []string{"queued", "downloading", "failed"} {
		if v := metricValue(t, fams, "rescalefs_auto_download_jobs", map[string]string{"state": state}); v != 0 {
			t.Errorf("%s jobs %v after both are done, want 0", state, v)
		}
	}
	for _, name := range []string{"rescalefs_auto_download_jobs_done_total", "rescalefs_auto_download_failures_total",
		"rescalefs_auto_download_files_total", "rescalefs_auto_download_bytes_total"} {
		if typ := fams[name].GetType(); typ != dto.MetricType_COUNTER {
			t.Errorf("%s is a %v, want a counter", name, typ)
		}
	}
	if typ := fams["rescalefs_auto_download_jobs"].GetType(); typ != dto.MetricType_GAUGE {
		t.Errorf("rescalefs_auto_download_jobs is a %v, want a gauge", typ)
	}
}
