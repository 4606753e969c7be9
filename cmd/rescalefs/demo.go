package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// runDemo serves the emulated platform in-process with sample jobs and mounts it: the README's first
// command, so it needs no account, no flags and no cleanup by hand.
func runDemo(args []string, stdout, stderr io.Writer) int {
	var c mountConfig
	var largeSize int64
	var latency time.Duration
	var bandwidth int64
	fl := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	addServeFlags(fl, &c)
	// The demo never touches the user's cache: without --cache-dir it uses a private temporary folder.
	if cd := fl.Lookup("cache-dir"); cd != nil {
		cd.DefValue = ""
		cd.Usage = "block cache and staging directory (default: a private temporary folder, removed at exit)"
	}
	fl.Var(newSizeValue(256<<20, &largeSize), "large-size", "size of the sample job's large result file")
	fl.DurationVar(&latency, "latency", 0, "emulated latency per request, e.g. 20ms")
	fl.Var(newSizeValue(0, &bandwidth), "bandwidth", "emulated bandwidth per connection, e.g. 25MiB (0: unlimited)")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs demo [flags] [MOUNTPOINT]\n\nServes an emulated Rescale platform with sample jobs (some still running) and mounts it at\nMOUNTPOINT (default ./rescale-demo) until Ctrl-C. No account needed.\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
	}
	if code, done := parseFlags(fl, args, -1, "demo", usage, stdout, stderr); done {
		return code
	}
	if fl.NArg() > 1 {
		fmt.Fprintf(stderr, "rescalefs demo: want at most 1 argument, got %d (see rescalefs demo --help)\n", fl.NArg())
		return exitUsage
	}
	if err := checkServeFlags(c); err != nil {
		fmt.Fprintf(stderr, "rescalefs demo: %v\n", err)
		return exitUsage
	}
	if latency < 0 || largeSize <= 0 {
		fmt.Fprintln(stderr, "rescalefs demo: --latency must not be negative and --large-size must be positive")
		return exitUsage
	}
	mountpoint := "rescale-demo"
	if fl.NArg() == 1 {
		mountpoint = fl.Arg(0)
	}
	// Unless asked otherwise, a private cache, so the demo neither reads nor fills the user's real one.
	privateCache := !fl.Changed("cache-dir")
	if err := demo(c, privateCache, mountpoint, largeSize, emulator.Faults{Latency: latency, Bandwidth: bandwidth}, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "rescalefs demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}

func demo(c mountConfig, privateCache bool, mountpoint string, largeSize int64, faults emulator.Faults, stdout, stderr io.Writer) error {
	// `rescalefs demo | head -1`: when the reader of stdout goes away, the demo ends as on Ctrl-C, with
	// everything below undone, instead of being killed by SIGPIPE with its mount left behind.
	defer catchBrokenPipe()()
	ctx, end := context.WithCancelCause(context.Background())
	defer end(nil)
	stdout = endOnWriteError{w: stdout, end: end}
	// The mountpoint is created when missing and removed again at the end, so the demo leaves nothing.
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return err
	}
	if err := os.Mkdir(abs, 0o755); err == nil {
		defer os.Remove(abs)
	} else if !errors.Is(err, os.ErrExist) {
		return err
	}
	if abs, err = checkMountpoint(abs); err != nil {
		return err
	}
	if privateCache {
		tmp, err := os.MkdirTemp("", "rescalefs-demo-cache-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		c.cacheDir = tmp
	}

	emu, err := emulator.New(emulator.Options{Faults: faults, RunJobs: true})
	if err != nil {
		return err
	}
	defer emu.Close()
	fmt.Fprintln(stdout, "starting the emulated platform with sample jobs...")
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := emu.Seed(emulator.SampleOptions{LargeFileSize: largeSize, Running: demoRunning}); err != nil {
		return err
	}
	if err := seedRegressionSuite(emu); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: emu, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: emulator.IdleTimeout}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	creds := credentials{Key: emu.APIKey(), URL: "http://" + ln.Addr().String(), KeySource: "demo"}
	client, err := remote.New(remote.Options{BaseURL: creds.URL, APIKey: creds.Key})
	if err != nil {
		return err
	}
	facts, err := findDemoFacts(ctx, client)
	if err != nil {
		return err
	}
	if facts.Profile, err = writeDemoProfile(creds); err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(facts.Profile))
	c.poll = min(c.poll, 5*time.Second) // jobs complete while you watch: notice quickly
	ready := func(err error) {
		if err != nil {
			return
		}
		if err := waitTourPaths(abs, facts); err != nil {
			fmt.Fprintf(stderr, "rescalefs demo: %v\n", err)
		}
		printDemoTour(stdout, abs, creds.URL, facts)
	}
	err = serveMount(ctx, c, creds, abs, stderr, ready)
	if ctx.Err() != nil {
		return context.Cause(ctx) // unmounted because nobody reads the output: not the Ctrl-C asked for
	}
	return err
}

// demoRunning is how long the demo's running jobs take, so a few finish while the user explores.
var demoRunning = []time.Duration{2 * time.Minute, 5 * time.Minute}

// writeDemoProfile writes an apiconfig file whose [demo] profile reaches the demo platform, in a private
// folder (0700, the file 0600), so the tour's `rescalefs submit` works from another terminal without the
// key on its command line or in the tour's text.
func writeDemoProfile(creds credentials) (string, error) {
	dir, err := os.MkdirTemp("", "rescalefs-demo-")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "apiconfig")
	body := "[demo]\napikey = " + creds.Key + "\napibaseurl = " + creds.URL + "\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return p, nil
}
