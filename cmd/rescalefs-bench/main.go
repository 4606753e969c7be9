// Command rescalefs-bench measures the read path side by side in one run against the emulator with
// WAN-like settings, and prints a table with ratios against a one-stream download, a 16-way
// parallel ranged download of the same file and `aria2c -x16` (the fastest ordinary downloader), with
// the CPU seconds per GiB the mount and the emulator used on each read row.
//
//	go run ./cmd/rescalefs-bench                       # defaults: 20ms per request, 25MiB/s per connection, 1GiB
//	go run ./cmd/rescalefs-bench --size 256MiB --skip-single
//	go run ./cmd/rescalefs-bench --skip=single,random,ls,concurrent,uploads,direct   # the sequential rows only
//
// The disk-tier row drops the kernel's page cache (/proc/sys/vm/drop_caches), so it needs root.
//
// It mounts with the real binary (built into a temp folder) as a separate process, so the mount's peak
// RSS can be read from /proc. All traffic stays on 127.0.0.1.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/pflag"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/internal/units"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

func main() { os.Exit(run(os.Args[1:])) }

type config struct {
	latency         time.Duration
	bandwidth, size int64
	files           int
	randomReads     int
	parallel        int
	skipSingle      bool
	skip            map[string]bool
	mountArgs       []string
	binary          string
	noLimits        bool
	manyFiles       bool
	pairs           int
}

func run(args []string) int {
	var c config
	fl := pflag.NewFlagSet("rescalefs-bench", pflag.ContinueOnError)
	fl.DurationVar(&c.latency, "latency", 20*time.Millisecond, "emulated latency per request")
	bw := fl.String("bandwidth", "25MiB", "emulated bandwidth per connection")
	size := fl.String("size", "1GiB", "size of each large file")
	fl.IntVar(&c.files, "files", 10000, "files in the listing job")
	fl.IntVar(&c.randomReads, "random-reads", 200, "4 KiB random reads")
	fl.IntVar(&c.parallel, "parallel", 16, "ranged requests of the parallel download row")
	fl.BoolVar(&c.skipSingle, "skip-single", false, "skip the (slow) one-stream row; ratios use the 16-way row only")
	skip := fl.StringSlice("skip", nil, "rows to skip: single, aria2c, seq (cold, warm, disk tier), random, ls, concurrent, uploads, direct")
	fl.StringSliceVar(&c.mountArgs, "mount-arg", nil, "extra flags for rescalefs mount, e.g. --mount-arg=--block-size=16MiB")
	fl.StringVar(&c.binary, "binary", "", "rescalefs binary (default: go build ./cmd/rescalefs)")
	fl.BoolVar(&c.noLimits, "no-limits", false, "the emulator does not enforce the platform's published request limits")
	fl.IntVar(&c.pairs, "pairs", 0, "also run the cold cp and aria2c in this many alternated pairs (pairs.go), for a ratio that holds on a loaded machine")
	fl.BoolVar(&c.manyFiles, "many-files", false, "only the many-small-files rows (manyfiles.go): aria2c, cp -r, rsync, tar, the downloader")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	c.skip = map[string]bool{"single": c.skipSingle}
	for _, k := range *skip {
		c.skip[k] = true
	}
	var err error
	if c.bandwidth, err = units.Parse(*bw); err != nil {
		fmt.Fprintln(os.Stderr, "rescalefs-bench:", err)
		return 2
	}
	if c.size, err = units.Parse(*size); err != nil {
		fmt.Fprintln(os.Stderr, "rescalefs-bench:", err)
		return 2
	}
	run := bench
	if c.manyFiles {
		run = manyFilesBench
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "rescalefs-bench:", err)
		return 1
	}
	return 0
}

type row struct {
	name    string
	seconds float64
	bytes   int64
	note    string
	// vsAria2c, when set, is the row's own ratio to aria2c (measured beside it), printed instead of
	// the ratio to the aria2c row.
	vsAria2c float64
}

func (r row) mibps() float64 {
	if r.seconds == 0 {
		return 0
	}
	return float64(r.bytes) / (1 << 20) / r.seconds
}

// serveLoopback serves h over HTTP on a 127.0.0.1 port the kernel picks; stop closes the server.
func serveLoopback(h http.Handler) (url string, stop func() error, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), srv.Close, nil
}

func bench(c config) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "rescalefs-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	emu, err := emulator.New(emulator.Options{NoLimits: c.noLimits})
	if err != nil {
		return err
	}
	defer emu.Close()
	// Seven large files: one for the download rows and the cold read, one for random reads, four for
	// the concurrent-readers row, each read cold, and one for a second cold read on the same mount.
	var specs []emulator.FileSpec
	for i := range 7 {
		specs = append(specs, emulator.FileSpec{RelativePath: fmt.Sprintf("results/big%d.bin", i), Size: c.size, Seed: int64(i + 1)})
	}
	bigJob, err := emu.AddJob(emulator.JobSpec{Name: "bench large", Files: specs})
	if err != nil {
		return err
	}
	var small []emulator.FileSpec
	for i := range c.files {
		small = append(small, emulator.FileSpec{RelativePath: fmt.Sprintf("case/%03d/step%05d.dat", i/100, i), Size: 100})
	}
	manyJob, err := emu.AddJob(emulator.JobSpec{Name: "bench many", Files: small})
	if err != nil {
		return err
	}
	url, stopServing, err := serveLoopback(emu)
	if err != nil {
		return err
	}
	defer stopServing()
	emu.SetFaults(emulator.Faults{Latency: c.latency, Bandwidth: c.bandwidth})

	client, err := remote.New(remote.Options{BaseURL: url, APIKey: emu.APIKey(), Limits: map[remote.Scope]float64{}})
	if err != nil {
		return err
	}
	files, err := client.JobFiles(ctx, bigJob.ID, "")
	if err != nil {
		return err
	}
	byName := map[string]remote.File{}
	for _, f := range files {
		byName[f.Name] = f
	}
	first := byName["big0.bin"]

	var rows []row
	if !c.skip["single"] {
		r, err := timedDownload(ctx, client, first, 1)
		if err != nil {
			return err
		}
		r.name = "one-stream download"
		rows = append(rows, r)
	}
	cpu := startCPU(0)
	r, err := timedDownload(ctx, client, first, c.parallel)
	if err != nil {
		return err
	}
	r.name = fmt.Sprintf("%d-way parallel ranged download", c.parallel)
	r.note = "CPU s/GiB: emulator and client " + cpu.perGiB(r.bytes).bench
	rows = append(rows, r)

	outDir := filepath.Join(work, "out")
	if err := os.Mkdir(outDir, 0o700); err != nil {
		return err
	}
	if !c.skip["aria2c"] {
		if r, ok, err := aria2c(ctx, url, emu.APIKey(), first, outDir); err != nil {
			return err
		} else if ok {
			rows = append(rows, r)
		} else {
			rows = append(rows, row{name: "aria2c -x16 -s16 -k4M", note: "skipped: aria2c not installed"})
		}
	}

	// The pairs first, on a machine nothing of the bench has loaded yet: after the rows below (gigabytes
	// through the page cache, a second mount alive) a fresh mount's reads were measured a third slower.
	if c.pairs > 0 && !c.skip["aria2c"] {
		r, err := coldPairs(c, work, url, emu.APIKey(), filepath.Join("jobs", bigJob.ID, "results"), first, c.pairs)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}

	mnt := filepath.Join(work, "mnt")
	stop, pid, err := startMount(c, work, mnt, url, emu.APIKey())
	if err != nil {
		return err
	}
	defer func() { stop() }()
	bigDir := filepath.Join(mnt, "jobs", bigJob.ID, "results")

	// fuseReads counts the read requests that reached the mount (the page cache answers the others).
	fuseReads := func() int64 { return mountStatus(mnt).Transfers.Reads }

	if !c.skip["seq"] {
		emu.ResetCounters()
		before := fuseReads()
		// On a small machine the emulator, the mount and the reader share the CPUs: the CPU time each used
		// says whether the read was bound by the network model or by processing.
		cpu = startCPU(pid)
		r, err = timedCopy(filepath.Join(bigDir, "big0.bin"), filepath.Join(outDir, "big0.bin"))
		if err != nil {
			return err
		}
		r.name = "mount: cold sequential cp"
		hwm, _ := peakRSS(pid)
		r.note = fmt.Sprintf("%s, %d FUSE reads, peak RSS %d MiB, %s",
			rangeRequests(emu), fuseReads()-before, hwm>>20, cpu.perGiB(r.bytes))
		rows = append(rows, r)
		before = fuseReads()
		cpu = startCPU(pid)
		r, err = timedCat(filepath.Join(bigDir, "big0.bin"))
		if err != nil {
			return err
		}
		r.name, r.note = "mount: warm re-read (cat)", fmt.Sprintf("%d FUSE reads, %s", fuseReads()-before, cpu.perGiB(r.bytes))
		rows = append(rows, r)
		// The reference for the warm row: the page cache of a local file of the same size, read the
		// same way in the same minute (on a loaded machine both move together).
		local := filepath.Join(outDir, "local.bin")
		if err := writeRandomFile(local, c.size); err != nil {
			return err
		}
		if _, err := timedCat(local); err != nil { // into the page cache
			return err
		}
		r, err = timedCat(local)
		os.Remove(local)
		if err != nil {
			return err
		}
		r.name, r.note = "local file: warm re-read (cat)", "the page cache of a local file, for the row above"
		rows = append(rows, r)

		// A cold copy again, on the mount that has read before: the first copy's CPU includes faulting in
		// the heap the block buffers come from (fresh pages from the kernel); a long-lived mount reuses it.
		// After the warm rows, so that they read the first file's pages right after the cold copy.
		emu.ResetCounters()
		cpu = startCPU(pid)
		r, err = timedCopy(filepath.Join(bigDir, "big6.bin"), filepath.Join(outDir, "big6.bin"))
		if err != nil {
			return err
		}
		r.name = "mount: cold cp of another file"
		r.note = fmt.Sprintf("the same mount: %s, %s", rangeRequests(emu), cpu.perGiB(r.bytes))
		rows = append(rows, r)

		// The disk tier alone: a fresh mount on the same cache folder (an empty memory tier), with the
		// kernel's page cache dropped (the mount's pages and the cache files' both).
		stop()
		if stop, pid, err = startMount(c, work, mnt, url, emu.APIKey()); err != nil {
			return err
		}
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
			rows = append(rows, row{name: "mount: disk-tier re-read (cat)", note: "skipped: cannot drop the page cache (not root?)"})
		} else {
			emu.ResetCounters()
			before = fuseReads()
			cpu = startCPU(pid)
			r, err = timedCat(filepath.Join(bigDir, "big0.bin"))
			if err != nil {
				return err
			}
			r.name = "mount: disk-tier re-read (cat)"
			hwm, _ := peakRSS(pid)
			r.note = fmt.Sprintf("fresh mount, page cache dropped: %s, %d FUSE reads, peak RSS %d MiB, %s, %s",
				rangeRequests(emu), fuseReads()-before, hwm>>20, cpu.perGiB(r.bytes), cacheCounters(mnt, nil))
			rows = append(rows, r)
		}
	}

	if !c.skip["random"] {
		emu.ResetCounters()
		fetchedBefore := int64(0)
		if st, err := cacheStats(mnt); err == nil {
			fetchedBefore = st.BytesFetched
		}
		r, err = randomReads(filepath.Join(bigDir, "big1.bin"), c.size, c.randomReads)
		if err != nil {
			return err
		}
		cnt := emu.Counters()
		reqs := cnt.Requests[emulator.EndpointContents] + cnt.Requests[emulator.EndpointS3Get]
		r.name = "mount: 4 KiB random reads"
		hwm, _ := peakRSS(pid)
		fetched := int64(0)
		if st, err := cacheStats(mnt); err == nil {
			fetched = st.BytesFetched - fetchedBefore
		}
		r.note = fmt.Sprintf("%d reads, %.1f ms each, %d range requests (storage and /contents/): %.2f per read, %.1f MiB fetched per read, peak RSS %d MiB",
			c.randomReads, 1000*r.seconds/float64(c.randomReads), reqs, float64(reqs)/float64(c.randomReads),
			float64(fetched)/float64(c.randomReads)/(1<<20), hwm>>20)
		rows = append(rows, r)
	}

	if !c.skip["ls"] {
		emu.ResetCounters()
		start := time.Now()
		out, err := exec.Command("ls", "-R", filepath.Join(mnt, "jobs", manyJob.ID)).Output()
		if err != nil {
			return fmt.Errorf("ls -R: %w", err)
		}
		cnt := emu.Counters()
		rows = append(rows, row{name: fmt.Sprintf("mount: ls -R of a %d-file job, cold", c.files), seconds: time.Since(start).Seconds(),
			note: fmt.Sprintf("%d lines, %d API requests, peak RSS %d MiB", strings.Count(string(out), "\n"), cnt.Total(), must(peakRSS(pid))>>20)})
	}

	if !c.skip["concurrent"] {
		since, _ := cacheStats(mnt)
		cpu = startCPU(pid)
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 2; i < 6; i++ {
			wg.Go(func() {
				if _, err := timedCat(filepath.Join(bigDir, fmt.Sprintf("big%d.bin", i))); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return err
		}
		hwm, _ := peakRSS(pid)
		rows = append(rows, row{name: "mount: four concurrent cold readers", seconds: time.Since(start).Seconds(), bytes: 4 * c.size,
			note: fmt.Sprintf("peak RSS of the mount %d MiB, %s, %s", hwm>>20, cpu.perGiB(4*c.size), cacheCounters(mnt, since))})
	}

	if !c.skip["uploads"] {
		more, err := uploadRows(ctx, c, work, mnt, emu, client)
		if err != nil {
			return err
		}
		rows = append(rows, more...)
	}
	if !c.skip["direct"] {
		more, err := directRows(c, work, mnt, url, emu, bigDir)
		if err != nil {
			return err
		}
		rows = append(rows, more...)
	}

	printTable(c, rows)
	return nil
}

// uploadRows (issue 4): a file of --size through uploads/ (until the platform confirms it) against one
// plain PutObject of the same size.
func uploadRows(ctx context.Context, c config, work, mnt string, emu *emulator.Emulator, client *remote.Client) ([]row, error) {
	var rows []row
	src := filepath.Join(work, "upload.bin")
	if err := writeRandomFile(src, c.size); err != nil {
		return nil, err
	}
	emu.ResetCounters()
	start := time.Now()
	if out, err := exec.Command("cp", src, filepath.Join(mnt, "uploads", "upload.bin")).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("cp into uploads/: %v: %s", err, out)
	}
	copied := time.Since(start)
	for {
		files, err := client.LibraryFiles(ctx, "upload.bin")
		if err == nil && len(files) > 0 {
			break
		}
		if time.Since(start) > time.Hour {
			return nil, errors.New("upload.bin not published within an hour")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cnt := emu.Counters()
	rows = append(rows, row{name: "mount: upload via uploads/ until published", seconds: time.Since(start).Seconds(), bytes: c.size,
		note: fmt.Sprintf("cp %.1fs, 2s settle, %d parts", copied.Seconds(), cnt.Requests[emulator.EndpointS3UploadPart])})

	me, err := client.Me(ctx)
	if err != nil {
		return nil, err
	}
	cs := me.DefaultStorage.ConnectionSettings
	s3c, err := client.NewS3Client(ctx, remote.S3Options{Region: cs.Region, Endpoint: cs.Endpoint})
	if err != nil {
		return nil, err
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	start = time.Now()
	if _, err := s3c.SDK().PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(cs.Container),
		Key: aws.String(strings.TrimSuffix(cs.PathBase, "/") + "/bench/plain-put.bin"), Body: f, ContentLength: aws.Int64(c.size)}); err != nil {
		return nil, fmt.Errorf("plain PutObject: %w", err)
	}
	rows = append(rows, row{name: "one plain S3 PutObject of the same file", seconds: time.Since(start).Seconds(), bytes: c.size})
	return rows, nil
}

// rangeRequests says how many ranged reads the emulator served since its counters were reset, by path.
func rangeRequests(emu *emulator.Emulator) string {
	cnt := emu.Counters()
	return fmt.Sprintf("%d storage GETs + %d /contents/ requests", cnt.Requests[emulator.EndpointS3Get], cnt.Requests[emulator.EndpointContents])
}

// directRows: cold reads of one file by two fresh mounts, one reading straight from storage, one through
// /contents/.
func directRows(c config, work, mnt, url string, emu *emulator.Emulator, bigDir string) ([]row, error) {
	var rows []row
	bin := c.binary
	if bin == "" {
		bin = filepath.Join(work, "rescalefs") // built by the first startMount
	}
	rel, err := filepath.Rel(mnt, filepath.Join(bigDir, "big0.bin"))
	if err != nil {
		return nil, err
	}
	for _, direct := range []bool{true, false} {
		cc := c
		cc.binary = bin
		name := fmt.Sprintf("direct-%v", direct)
		cc.mountArgs = append(slices.Clone(c.mountArgs), fmt.Sprintf("--direct-reads=%v", direct))
		m2 := filepath.Join(work, "mnt-"+name)
		stop, pid, err := startMountIn(cc, work, filepath.Join(work, "cache-"+name), m2, url, emu.APIKey())
		if err != nil {
			return nil, err
		}
		// The job's listing first, so the row's CPU and requests are the read's, not the mount's start;
		// and the page cache the rows before filled is dropped (best effort: root only), so the two
		// rows start alike.
		if _, err := os.Stat(filepath.Join(m2, rel)); err != nil {
			stop()
			return nil, err
		}
		_ = os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0)
		emu.ResetCounters()
		cpu := startCPU(pid)
		r, err := timedCat(filepath.Join(m2, rel))
		usage := cpu.perGiB(r.bytes)
		stop()
		if err != nil {
			return nil, err
		}
		cnt := emu.Counters()
		if direct {
			r.name = "mount: cold cat, direct storage reads"
		} else {
			r.name = "mount: cold cat, /contents/ reads"
		}
		r.note = fmt.Sprintf("%d S3 GETs, %d /contents/ requests, %s", cnt.Requests[emulator.EndpointS3Get], cnt.Requests[emulator.EndpointContents], usage)
		rows = append(rows, r)
	}
	return rows, nil
}

// writeRandomFile writes size pseudo-random bytes (incompressible, cheap to make) to path.
func writeRandomFile(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(4, 2))
	buf := make([]byte, 4<<20)
	for left := size; left > 0; {
		for i := 0; i+8 <= len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
		}
		n := min(int64(len(buf)), left)
		if _, err := f.Write(buf[:n]); err != nil {
			f.Close()
			return err
		}
		left -= n
	}
	return f.Close()
}

// timedDownload reads the whole file through the API in n equal ranged streams, as a script would.
func timedDownload(ctx context.Context, client *remote.Client, f remote.File, n int) (row, error) {
	size := f.DecryptedSize
	part := (size + int64(n) - 1) / int64(n)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for off := int64(0); off < size; off += part {
		wg.Go(func() {
			rc, err := client.OpenRange(ctx, f.ID, off, min(part, size-off))
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			if _, err := io.Copy(io.Discard, rc); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return row{}, err
	}
	return row{seconds: time.Since(start).Seconds(), bytes: size}, nil
}

// cpuMark is the CPU time used so far by the mount (pid; 0: none) and by this process, which serves the
// emulator (its own goroutines only wait for the reader while a mount row runs), and the mount's minor
// page faults (each a fresh page of memory: the kernel zeroes it, which costs the mount CPU time).
type cpuMark struct {
	pid         int
	mount, self float64
	faults      int64
}

func startCPU(pid int) cpuMark {
	m := cpuMark{pid: pid, self: cpuSeconds(os.Getpid())}
	if pid > 0 {
		m.mount, m.faults = procStat(pid)
	}
	return m
}

// cpuUse is the CPU seconds per GiB each side used since the mark, formatted, and the mount's minor
// faults per GiB.
type cpuUse struct{ mount, bench, faults string }

func (u cpuUse) String() string {
	s := fmt.Sprintf("CPU s/GiB: mount %s, emulator %s", u.mount, u.bench)
	if u.faults != "" {
		s += ", mount page faults/GiB " + u.faults
	}
	return s
}

func (m cpuMark) perGiB(bytes int64) cpuUse {
	per := func(s float64) string {
		if bytes <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", s/(float64(bytes)/(1<<30)))
	}
	u := cpuUse{mount: "-", bench: per(cpuSeconds(os.Getpid()) - m.self)}
	if m.pid > 0 && bytes > 0 {
		cpu, faults := procStat(m.pid)
		u.mount = per(cpu - m.mount)
		u.faults = fmt.Sprintf("%.0fk", float64(faults-m.faults)/1000/(float64(bytes)/(1<<30)))
	}
	return u
}

// aria2c downloads f through /contents/ as `aria2c -x16 -s16 -k4M` (16 connections, 4 MiB pieces), the
// fastest ordinary downloader, into dir. ok is false when aria2c is not installed. The key goes through a
// 0600 configuration file, not the command line.
func aria2c(ctx context.Context, url, key string, f remote.File, dir string) (r row, ok bool, err error) {
	bin, err := exec.LookPath("aria2c")
	if err != nil {
		return row{}, false, nil
	}
	conf := filepath.Join(dir, "aria2.conf")
	if err := os.WriteFile(conf, []byte("header=Authorization: Token "+key+"\n"), 0o600); err != nil {
		return row{}, false, err
	}
	defer os.Remove(conf)
	name := "aria2c-" + f.ID
	defer os.Remove(filepath.Join(dir, name))
	cmd := exec.CommandContext(ctx, bin, "--conf-path="+conf, "-x16", "-s16", "-k4M", "-q",
		"--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false", "--check-certificate=false",
		"-d", dir, "-o", name, url+"/api/v2/files/"+f.ID+"/contents/")
	cpu := startCPU(0)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		return row{}, false, fmt.Errorf("aria2c: %v: %s", err, b)
	}
	r = row{name: "aria2c -x16 -s16 -k4M", seconds: time.Since(start).Seconds(), bytes: f.DecryptedSize}
	fi, err := os.Stat(filepath.Join(dir, name))
	if err != nil || fi.Size() != f.DecryptedSize {
		return row{}, false, fmt.Errorf("aria2c wrote %v bytes, want %d (%v)", fi, f.DecryptedSize, err)
	}
	own := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	r.note = fmt.Sprintf("CPU s/GiB: aria2c %.2f, emulator %s", own.Seconds()/(float64(r.bytes)/(1<<30)), cpu.perGiB(r.bytes).bench)
	return r, true, nil
}

// timedCopy copies src to dst with cp, as a user would, then removes dst.
func timedCopy(src, dst string) (row, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return row{}, err
	}
	defer os.Remove(dst)
	start := time.Now()
	if b, err := exec.Command("cp", src, dst).CombinedOutput(); err != nil {
		return row{}, fmt.Errorf("cp %s: %v: %s", src, err, b)
	}
	return row{seconds: time.Since(start).Seconds(), bytes: fi.Size()}, nil
}

// cacheCounters is the mount's block-cache counters since it started, from its .rescalefs/status: what
// was fetched, read from the disk tier, hashed, and read ahead only to be dropped unread.
// The counters are the mount's since it started: since is a snapshot taken before the row (nil: the
// mount is fresh), so the row shows its own.
func cacheCounters(mnt string, since *cache.Stats) string {
	s, err := cacheStats(mnt)
	if err != nil {
		return "cache counters: " + err.Error()
	}
	if since == nil {
		since = &cache.Stats{}
	}
	return fmt.Sprintf("cache: %d MiB fetched, %d disk hits, %d MiB hashed, %d read-ahead blocks dropped unread",
		(s.BytesFetched-since.BytesFetched)>>20, s.DiskHits-since.DiskHits, (s.HashedBytes-since.HashedBytes)>>20,
		s.ReadaheadDropped-since.ReadaheadDropped)
}

// cacheStats reads the mount's cache counters from .rescalefs/status.
func cacheStats(mnt string) (*cache.Stats, error) {
	b, err := os.ReadFile(filepath.Join(mnt, ".rescalefs", "status"))
	if err != nil {
		return nil, err
	}
	var st struct {
		Cache *cache.Stats `json:"cache"`
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Cache == nil {
		return nil, errors.New("none")
	}
	return st.Cache, nil
}

func timedCat(path string) (row, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return row{}, err
	}
	// A real file, not io.Discard: that would make Go copy cat's output through a pipe, and the pipe,
	// not the mount, would be measured.
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return row{}, err
	}
	defer devNull.Close()
	start := time.Now()
	cmd := exec.Command("cat", path)
	cmd.Stdout = devNull
	if err := cmd.Run(); err != nil {
		return row{}, fmt.Errorf("cat %s: %w", path, err)
	}
	return row{seconds: time.Since(start).Seconds(), bytes: fi.Size()}, nil
}

func randomReads(path string, size int64, n int) (row, error) {
	f, err := os.Open(path)
	if err != nil {
		return row{}, err
	}
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	start := time.Now()
	for range n {
		off := rng.Int64N(size/4096) * 4096
		if _, err := f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return row{}, err
		}
	}
	return row{seconds: time.Since(start).Seconds(), bytes: int64(n) * 4096}, nil
}

// startMount runs `rescalefs mount --foreground` as a child and waits until the mount answers.
func startMount(c config, work, mnt, url, key string) (stop func(), pid int, err error) {
	return startMountIn(c, work, filepath.Join(work, "cache"), mnt, url, key)
}

// startMountIn is startMount with its own cache folder.
func startMountIn(c config, work, cacheDir, mnt, url, key string) (stop func(), pid int, err error) {
	bin := c.binary
	if bin == "" {
		bin = filepath.Join(work, "rescalefs")
		build := exec.Command("go", "build", "-o", bin, "./cmd/rescalefs")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return nil, 0, fmt.Errorf("build rescalefs (run from the repository root): %w", err)
		}
	}
	if err := os.Mkdir(mnt, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, 0, err
	}
	args := append([]string{"mount", "--foreground", "--cache-dir", cacheDir, "--log-level", "warn"}, c.mountArgs...)
	cmd := exec.Command(bin, append(args, mnt)...)
	cmd.Env = append(os.Environ(), "RESCALE_API_KEY="+key, "RESCALE_API_URL="+url)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
			_ = cmd.Process.Kill()
			<-done
		}
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(mnt, "jobs")); err == nil {
			return stop, cmd.Process.Pid, nil
		}
	}
	stop()
	return nil, 0, errors.New("the mount did not come up within 30s")
}

// mountStatus reads the mount's .rescalefs/status; a zero value when it cannot.
func mountStatus(mnt string) (st struct {
	Transfers struct {
		Reads int64 `json:"reads"`
	} `json:"transfers"`
}) {
	if b, err := os.ReadFile(filepath.Join(mnt, ".rescalefs", "status")); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// cpuSeconds is the user plus system CPU time a process has used so far (0 when it cannot be read).
func cpuSeconds(pid int) float64 {
	cpu, _ := procStat(pid)
	return cpu
}

// procStat is the user plus system CPU time a process has used so far, and its minor page faults
// (zeros when they cannot be read).
func procStat(pid int) (cpu float64, minorFaults int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command name (which may hold spaces) start at its closing parenthesis;
	// minflt, utime and stime are fields 10, 14 and 15 of the line, 8, 12 and 13 after it.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, 0
	}
	minorFaults, _ = strconv.ParseInt(f[7], 10, 64)
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100, minorFaults // USER_HZ is 100 on Linux
}

func must(v int64, _ error) int64 { return v }

// peakRSS reads VmHWM (the high-water mark of resident memory) of a process.
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmHWM")
}

func printTable(c config, rows []row) {
	fmt.Printf("rescalefs-bench: emulator at %s per request, %s/s per connection, files of %s\n\n",
		c.latency, units.Human(c.bandwidth), units.Human(c.size))
	var single, parallel, aria float64
	for _, r := range rows {
		switch {
		case r.name == "one-stream download":
			single = r.mibps()
		case strings.Contains(r.name, "parallel ranged download"):
			parallel = r.mibps()
		case strings.HasPrefix(r.name, "aria2c"):
			aria = r.mibps()
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "row\tseconds\tMiB/s\tvs one-stream\tvs parallel\tvs aria2c\tnote\t")
	for _, r := range rows {
		ratio := func(base float64) string {
			if base == 0 || r.bytes == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", r.mibps()/base)
		}
		mib := "-"
		if r.bytes > 0 {
			mib = fmt.Sprintf("%.1f", r.mibps())
		}
		vsAria := ratio(aria)
		if r.vsAria2c > 0 {
			vsAria = fmt.Sprintf("%.2fx", r.vsAria2c)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", r.name, r.seconds, mib, ratio(single), ratio(parallel), vsAria, r.note)
	}
	tw.Flush()
}
