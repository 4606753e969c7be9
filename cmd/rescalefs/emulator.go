package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/rescalefs/rescalefs/internal/units"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// emulatorStopped is closed by tests to stop a running `rescalefs emulator` as SIGINT would.
var emulatorStopped = make(chan struct{})

func runEmulator(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "publish":
			return runEmulatorPublish(args[1:], stdout, stderr)
		case "add-job":
			return runEmulatorAddJob(args[1:], stdout, stderr)
		}
	}
	fl := pflag.NewFlagSet("emulator", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	listen := fl.String("listen", "127.0.0.1:0", "loopback address to serve on (port 0 picks a free port)")
	dataDir := fl.String("data", "", "directory that keeps jobs, files and objects across restarts (default: in memory)")
	apiKey := fl.String("api-key", "", "API key to accept (default: the one stored in --data, else random)")
	sample := fl.Bool("sample-jobs", false, "add the sample jobs (completed, running, failed, one with 10,000 files)")
	ex := addExecutorFlags(fl)
	largeSize := fl.String("sample-large-size", "512MiB", "size of the large file among the sample jobs")
	latency := fl.Duration("latency", 0, "latency added to every response, e.g. 20ms")
	bandwidth := fl.String("bandwidth", "0", "bandwidth cap per connection, bytes per second, e.g. 25MiB (0 = none)")
	errRate := fl.Float64("error-rate", 0, "fraction of requests answered 500, 503 or 504")
	throttleRate := fl.Float64("throttle-rate", 0, "fraction of requests answered 429 with Retry-After")
	cutRate := fl.Float64("cut-rate", 0, "fraction of responses whose connection is cut mid-body")
	shortRate := fl.Float64("short-rate", 0, "fraction of responses sent shorter than their Content-Length")
	stallRate := fl.Float64("stall-rate", 0, "fraction of responses that send half their body, then nothing (see --stall-for)")
	stallHeadersRate := fl.Float64("stall-headers-rate", 0, "fraction of requests answered with nothing before the headers (see --stall-for)")
	stallFor := fl.Duration("stall-for", 0, "how long a stall lasts (0: until the client gives up)")
	frozen := fl.Bool("frozen", false, "start frozen: connections are accepted, nothing is answered (thaw with PUT /_emulator/faults)")
	faultSeed := fl.Uint64("fault-seed", 1, "seed of the fault injection RNG (same seed, same faults)")
	jobDuration := fl.Duration("job-duration", 0, "how long a submitted job executes (default 1m)")
	noLimits := fl.Bool("no-limits", false, "do not enforce the platform's published request limits (429 past them)")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs emulator [flags]\n       rescalefs emulator publish --url URL --api-key KEY [--name NAME] DIR\n       rescalefs emulator add-job --url URL --api-key KEY --name NAME [--duration 2m] [--fail]")
		fmt.Fprintln(w, "\nServes the emulated Rescale platform (API and S3) on loopback. The first line printed is\nRESCALE_API_URL=<url> RESCALE_API_KEY=<key>, for eval. Stops on SIGINT or SIGTERM.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
	}
	if code, done := parseFlags(fl, args, 0, "emulator", usage, stdout, stderr); done {
		return code
	}
	if err := checkLoopback(*listen); err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator: %v\n", err)
		return exitUsage
	}
	large, err := units.Parse(*largeSize)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator: --sample-large-size: %v\n", err)
		return exitUsage
	}
	bw, err := units.Parse(*bandwidth)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator: --bandwidth: %v\n", err)
		return exitUsage
	}
	for name, r := range map[string]float64{"error-rate": *errRate, "throttle-rate": *throttleRate, "cut-rate": *cutRate, "short-rate": *shortRate,
		"stall-rate": *stallRate, "stall-headers-rate": *stallHeadersRate} {
		if r < 0 || r > 1 {
			fmt.Fprintf(stderr, "rescalefs emulator: --%s must be between 0 and 1\n", name)
			return exitUsage
		}
	}
	if *latency < 0 || *jobDuration < 0 {
		fmt.Fprintln(stderr, "rescalefs emulator: --latency and --job-duration must not be negative")
		return exitUsage
	}
	lc := emulator.DefaultLifecycle()
	if *jobDuration > 0 {
		lc.Executing = *jobDuration
	}
	lc = ex.lifecycle(fl, lc)
	emu, err := emulator.New(emulator.Options{
		DataDir: *dataDir, APIKey: *apiKey, Lifecycle: lc, NoLimits: *noLimits,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Faults: emulator.Faults{Latency: *latency, Bandwidth: bw, ErrorRate: *errRate, ThrottleRate: *throttleRate,
			CutRate: *cutRate, ShortRate: *shortRate, StallRate: *stallRate, StallHeadersRate: *stallHeadersRate,
			StallFor: *stallFor, Frozen: *frozen, Seed: *faultSeed},
	})
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator: %v\n", err)
		return exitFailure
	}
	defer emu.Close()
	if err := ex.start(emu, *dataDir); err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator: %v\n", err)
		return exitFailure
	}
	if *sample {
		if err := emu.Seed(emulator.SampleOptions{LargeFileSize: large}); err != nil {
			fmt.Fprintf(stderr, "rescalefs emulator: %v\n", err)
			return exitFailure
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator: %v\n", err)
		return exitFailure
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// IdleTimeout: object stores drop idle keep-alive connections after about 20 s; without it, a
	// client that opens many transports holds the emulator's descriptors forever.
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: emulator.IdleTimeout}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(stdout, "RESCALE_API_URL=http://%s RESCALE_API_KEY=%s\n", ln.Addr(), emu.APIKey())
	select {
	case <-ctx.Done():
	case <-emulatorStopped:
	case err := <-served:
		fmt.Fprintf(stderr, "rescalefs emulator: %v\n", err)
		return exitFailure
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	return exitOK
}

// checkLoopback refuses listen addresses other than loopback ones: the emulator accepts a test key and
// serves files of the local machine through its admin endpoints.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--listen %q: only loopback addresses (127.0.0.1, [::1], localhost) are allowed", addr)
}

// adminFlags are the connection flags of the publish and add-job sub-commands.
func adminFlags(fl *pflag.FlagSet) (url, key *string) {
	url = fl.String("url", "", "emulator URL (default $RESCALE_API_URL)")
	key = fl.String("api-key", "", "emulator API key (default $RESCALE_API_KEY)")
	return url, key
}

func adminPost(url, key, path string, body any, stdout, stderr io.Writer, cmd string) int {
	if url == "" {
		url = os.Getenv("RESCALE_API_URL")
	}
	if key == "" {
		key = os.Getenv("RESCALE_API_KEY")
	}
	if url == "" || key == "" {
		fmt.Fprintf(stderr, "rescalefs emulator %s: --url and --api-key (or RESCALE_API_URL and RESCALE_API_KEY) are required\n", cmd)
		return exitUsage
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(http.MethodPost, strings.TrimRight(url, "/")+path, bytes.NewReader(b))
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator %s: %v\n", cmd, err)
		return exitUsage
	}
	req.Header.Set("Authorization", "Token "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator %s: %v\n", cmd, err)
		return exitFailure
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out emulator.AdminJobResponse
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(rb, &out) != nil {
		fmt.Fprintf(stderr, "rescalefs emulator %s: %s: %s\n", cmd, resp.Status, strings.TrimSpace(string(rb)))
		return exitFailure
	}
	fmt.Fprintln(stdout, out.ID)
	return exitOK
}

func runEmulatorPublish(args []string, stdout, stderr io.Writer) int {
	fl := pflag.NewFlagSet("emulator publish", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	url, key := adminFlags(fl)
	name := fl.String("name", "", "job name (default: the directory's name)")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs emulator publish [--url URL] [--api-key KEY] [--name NAME] DIR\n\nPublishes DIR's files as the outputs of a new completed job and prints its id.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
	}
	if code, done := parseFlags(fl, args, 1, "emulator publish", usage, stdout, stderr); done {
		return code
	}
	dir, err := filepath.Abs(fl.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs emulator publish: %v\n", err)
		return exitUsage
	}
	return adminPost(*url, *key, "/_emulator/publish", emulator.PublishRequest{Name: *name, Dir: dir}, stdout, stderr, "publish")
}

func runEmulatorAddJob(args []string, stdout, stderr io.Writer) int {
	fl := pflag.NewFlagSet("emulator add-job", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	url, key := adminFlags(fl)
	name := fl.String("name", "", "job name (required)")
	duration := fl.Duration("duration", 2*time.Minute, "time from now until the job completes")
	fail := fl.Bool("fail", false, "the run fails (Stopping \"A run failed\", then Completed)")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs emulator add-job [--url URL] [--api-key KEY] --name NAME [--duration 2m] [--fail]\n\nAdds a job that runs for --duration, then completes, and prints its id.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
	}
	if code, done := parseFlags(fl, args, 0, "emulator add-job", usage, stdout, stderr); done {
		return code
	}
	if *name == "" || *duration <= 0 {
		fmt.Fprintln(stderr, "rescalefs emulator add-job: --name and a positive --duration are required")
		return exitUsage
	}
	return adminPost(*url, *key, "/_emulator/jobs", emulator.AddJobRequest{Name: *name, Duration: duration.String(), Fail: *fail},
		stdout, stderr, "add-job")
}
