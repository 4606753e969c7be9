package main

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/download"
	"github.com/rescalefs/rescalefs/internal/units"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// manyFilesBench (issue 13) copies the sample job of --files small files (the 10,000-file parameter
// sweep) side by side in one run: aria2c -j16 of the files' downloadUrls (the parallel downloader a
// user would reach for), cp -r, rsync -a and tar through fresh mounts (reading from storage, the
// default), and the automatic downloader's path (download.Files). The emulator enforces the
// platform's published limits (unless --no-limits); each row says the requests it made and the 429s
// it was answered, and its time against aria2c's.
func manyFilesBench(c config) error {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "rescalefs-bench-many-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := os.Chmod(work, 0o700); err != nil {
		return err
	}

	emu, err := emulator.New(emulator.Options{NoLimits: c.noLimits})
	if err != nil {
		return err
	}
	defer emu.Close()
	if err := emu.Seed(emulator.SampleOptions{LargeFileSize: 1 << 20, ManyFiles: c.files}); err != nil {
		return err
	}
	url, stopServing, err := serveLoopback(emu)
	if err != nil {
		return err
	}
	defer stopServing()

	// The listing is made without latency: it is not what is measured.
	client, err := remote.New(remote.Options{BaseURL: url, APIKey: emu.APIKey()})
	if err != nil {
		return err
	}
	jobs, err := client.ListJobs(ctx, nil)
	if err != nil {
		return err
	}
	var job remote.Job
	for _, j := range jobs {
		if strings.Contains(j.Name, "files)") {
			job = j
		}
	}
	if job.ID == "" {
		return errors.New("the sample set has no many-files job")
	}
	files, err := client.JobFiles(ctx, job.ID, "")
	if err != nil {
		return err
	}
	var total int64
	for _, f := range files {
		total += f.DecryptedSize
	}
	emu.SetFaults(emulator.Faults{Latency: c.latency, Bandwidth: c.bandwidth})

	type result struct {
		row
		reqS3, reqContents, throttled int64
		clientCPU, emulatorCPU        float64
	}
	// clientCPU is set by each measured function: the CPU seconds of the programs it ran (the mount's
	// included); the emulator's are this process's (with download.Files, which runs here too).
	var clientCPU float64
	// row.note: for the mount rows, how many files were not fetched ahead of their open (the cache's
	// misses: a walk's first files).
	var results []result
	measure := func(name string, dest string, f func() error) error {
		emu.ResetCounters()
		clientCPU = 0
		cpu0 := cpuSeconds(os.Getpid())
		start := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		secs := time.Since(start).Seconds()
		emuCPU := cpuSeconds(os.Getpid()) - cpu0
		cnt := emu.Counters()
		var throttled int64
		for _, st := range cnt.Statuses {
			throttled += st[http.StatusTooManyRequests]
		}
		if err := verifyCopy(dest, files); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results = append(results, result{row: row{name: name, seconds: secs, bytes: total},
			reqS3: cnt.Requests[emulator.EndpointS3Get], reqContents: cnt.Requests[emulator.EndpointContents], throttled: throttled,
			clientCPU: clientCPU, emulatorCPU: emuCPU})
		fmt.Fprintf(os.Stderr, "rescalefs-bench: %s: %.1fs\n", name, secs)
		return os.RemoveAll(dest)
	}

	if _, err := exec.LookPath("aria2c"); err != nil {
		return fmt.Errorf("aria2c is needed for the baseline row (apt-get install aria2): %w", err)
	}
	ariaDest := filepath.Join(work, "aria2c")
	if err := measure("aria2c -j16 of the downloadUrls", ariaDest, func() error {
		var err error
		clientCPU, err = aria2cFiles(work, ariaDest, emu.APIKey(), files)
		return err
	}); err != nil {
		return err
	}

	bin := c.binary
	if bin == "" {
		bin = filepath.Join(work, "rescalefs")
		build := exec.Command("go", "build", "-o", bin, "./cmd/rescalefs")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build rescalefs (run from the repository root): %w", err)
		}
	}
	copies := []struct {
		name string
		cmd  func(src, dest string) *exec.Cmd
	}{
		{"mount: cp -r", func(src, dest string) *exec.Cmd { return exec.Command("cp", "-r", src, dest) }},
		{"mount: rsync -a", func(src, dest string) *exec.Cmd { return exec.Command("rsync", "-a", src+"/", dest+"/") }},
		{"mount: tar c | tar x", func(src, dest string) *exec.Cmd {
			return exec.Command("bash", "-c", fmt.Sprintf("set -o pipefail; mkdir -p %q && tar -C %q -cf - . | tar -C %q -xf -", dest, src, dest))
		}},
	}
	for i, cp := range copies {
		cc := c
		cc.binary = bin
		cc.mountArgs = append(slices.Clone(c.mountArgs), "--cache-dir", filepath.Join(work, fmt.Sprintf("cache-%d", i)))
		mnt := filepath.Join(work, fmt.Sprintf("mnt-%d", i))
		stop, pid, err := startMount(cc, work, mnt, url, emu.APIKey())
		if err != nil {
			return err
		}
		src := filepath.Join(mnt, "jobs", job.ID)
		// The listing first, untimed: `ls -R` has its own row in the main bench.
		if err := exec.Command("ls", "-R", src).Run(); err != nil {
			stop()
			return fmt.Errorf("ls -R: %w", err)
		}
		dest := filepath.Join(work, fmt.Sprintf("copy-%d", i))
		misses0 := cacheMisses(mnt)
		var misses int64
		err = measure(cp.name, dest, func() error {
			mountCPU := cpuSeconds(pid)
			cpu, err := runCPU(cp.cmd(src, dest))
			if err != nil {
				return err
			}
			clientCPU = cpu + cpuSeconds(pid) - mountCPU
			misses = cacheMisses(mnt) - misses0
			return nil
		})
		if err == nil {
			hwm, _ := peakRSS(pid)
			results[len(results)-1].note = fmt.Sprintf("%d files fetched only once opened, mount peak RSS %d MiB", misses, hwm>>20)
		}
		stop()
		if err != nil {
			return err
		}
	}

	// The automatic downloader's path, in this process: a client pacing itself as the mount's does,
	// reading from storage through a cache of the mount's default shape.
	dlClient, err := remote.New(remote.Options{BaseURL: url, APIKey: emu.APIKey()})
	if err != nil {
		return err
	}
	direct := remote.NewDirectSource(dlClient, remote.DirectSourceOptions{})
	defer direct.Close()
	direct.Register(files...)
	blocks, err := cache.New(direct, cache.Options{Parallel: 16, MemoryBytes: 256 << 20, MaxRequestSize: 16 << 20, MinRequestSize: 16 << 20})
	if err != nil {
		return err
	}
	defer blocks.Close()
	dlDir := filepath.Join(work, "downloads")
	if err := measure("automatic downloader (download.Files)", filepath.Join(dlDir, job.ID), func() error {
		return download.Files(ctx, download.FilesOptions{Cache: blocks, Dir: dlDir}, job.ID, files)
	}); err != nil {
		return err
	}

	// The automatic downloader of the binary: a fresh mount with --auto-download, timed from the start
	// of the mount until the job is reported done. It downloads the other completed sample jobs too
	// (a few MiB in all, two jobs at a time), so its request counts include theirs.
	autoDir := filepath.Join(work, "auto")
	cc := c
	cc.binary = bin
	cc.mountArgs = append(slices.Clone(c.mountArgs), "--cache-dir", filepath.Join(work, "cache-auto"), "--auto-download", autoDir)
	mnt := filepath.Join(work, "mnt-auto")
	var stopAuto func()
	err = measure("mount --auto-download (all sample jobs)", filepath.Join(autoDir, job.ID), func() error {
		stop, pid, err := startMount(cc, work, mnt, url, emu.APIKey())
		if err != nil {
			return err
		}
		stopAuto = stop
		defer func() { clientCPU = cpuSeconds(pid) }()
		for deadline := time.Now().Add(time.Hour); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if st, ok := autoDownloadState(mnt, job.ID); ok && st == "done" {
				return nil
			} else if st == "failed" {
				return errors.New("the automatic download of the job failed")
			}
		}
		return errors.New("the job was not downloaded within an hour")
	})
	if stopAuto != nil {
		stopAuto()
	}
	if err != nil {
		return err
	}

	// aria2c again, last: on a shared machine the load changes during a run; the ratios use the faster
	// of the two aria2c runs.
	if err := measure("aria2c -j16 again (load check)", ariaDest, func() error {
		var err error
		clientCPU, err = aria2cFiles(work, ariaDest, emu.APIKey(), files)
		return err
	}); err != nil {
		return err
	}

	fmt.Printf("rescalefs-bench: %d files (%s) of job %s, emulator at %s per request, %s/s per connection, limits enforced: %v\n\n",
		len(files), units.Human(total), job.ID, c.latency, units.Human(c.bandwidth), !c.noLimits)
	base := min(results[0].seconds, results[len(results)-1].seconds)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "row\tseconds\tfiles/s\tvs aria2c\tS3 GETs\t/contents/\t429s\tCPU s client\tCPU s emulator\tnote\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f\t%.2fx\t%d\t%d\t%d\t%.1f\t%.1f\t%s\t\n", r.name, r.seconds, float64(len(files))/r.seconds,
			r.seconds/base, r.reqS3, r.reqContents, r.throttled, r.clientCPU, r.emulatorCPU, r.note)
	}
	tw.Flush()
	fmt.Println("\n\"vs aria2c\" is time over the faster aria2c run's time: 1.00x is as fast, lower is faster.")
	return nil
}

// aria2cFiles downloads every file's downloadUrl into dest/<relativePath>, 16 at a time. The key goes in
// the input file (0600 in a 0700 folder), never on the command line.
func aria2cFiles(work, dest, key string, files []remote.File) (float64, error) {
	var b strings.Builder
	for _, f := range files {
		fmt.Fprintf(&b, "%s\n  out=%s\n  header=Authorization: Token %s\n", f.DownloadURL, f.RelativePath, key)
	}
	input := filepath.Join(work, "aria2c-input")
	if err := os.WriteFile(input, []byte(b.String()), 0o600); err != nil {
		return 0, err
	}
	defer os.Remove(input)
	cmd := exec.Command("aria2c", "-j16", "-x1", "-s1", "-i", input, "-d", dest, "--file-allocation=none",
		"--allow-overwrite=true", "--auto-file-renaming=false", "--console-log-level=error", "--summary-interval=0",
		"--download-result=hide", "--max-tries=20", "--retry-wait=1")
	return runCPU(cmd)
}

// runCPU runs cmd and returns the CPU seconds it used (user and system, its children included).
func runCPU(cmd *exec.Cmd) (float64, error) {
	out, err := cmd.CombinedOutput()
	var cpu float64
	if ps := cmd.ProcessState; ps != nil {
		cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	}
	if err != nil {
		return cpu, fmt.Errorf("%s: %v: %s", filepath.Base(cmd.Path), err, out)
	}
	return cpu, nil
}

// verifyCopy checks every file under dest/<relativePath> against its sha512.
func verifyCopy(dest string, files []remote.File) error {
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dest, f.RelativePath))
		if err != nil {
			return err
		}
		sum := sha512.Sum512(b)
		if want := f.SHA512(); want != "" && hex.EncodeToString(sum[:]) != want {
			return fmt.Errorf("%s: the copy differs from the platform's file", f.RelativePath)
		}
	}
	return nil
}

// autoDownloadState reads a job's automatic download state from the mount's .rescalefs/status.
func autoDownloadState(mnt, jobID string) (string, bool) {
	var st struct {
		Extra struct {
			AutoDownload struct {
				Jobs []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"jobs"`
			} `json:"autoDownload"`
		} `json:"extra"`
	}
	b, err := os.ReadFile(filepath.Join(mnt, ".rescalefs", "status"))
	if err != nil || json.Unmarshal(b, &st) != nil {
		return "", false
	}
	for _, j := range st.Extra.AutoDownload.Jobs {
		if j.ID == jobID {
			return j.State, true
		}
	}
	return "", false
}

// cacheMisses reads the mount's cache misses (blocks fetched for a reader, not ahead) from its status.
func cacheMisses(mnt string) int64 {
	var st struct {
		Cache struct {
			Misses int64
		} `json:"cache"`
	}
	if b, err := os.ReadFile(filepath.Join(mnt, ".rescalefs", "status")); err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st.Cache.Misses
}
