package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rescalefs/rescalefs/remote"
)

// tourStep is one line of the demo's guided tour: a command to paste into another terminal, and what
// it shows.
type tourStep struct {
	Cmd, Why string
	Long     bool // printed after the table, its comment above it: too wide for the table's column
}

// demoFacts are real ids and names of the demo platform, found through its own API before mounting, so
// that every line of the tour works as printed.
type demoFacts struct {
	Completed   string // a small job that completed successfully
	Filter      string // text that some of Completed's file names contain, for an @ filter
	Failed      string // a job that completed and failed
	Running     string // a running job: its process_output.log grows live
	LibraryFile string // a file of the library (files/)
	// Profile is an apiconfig file (0600, in the demo's private folder) whose [demo] profile reaches the
	// demo platform, for the tour's `rescalefs submit`; "" = no submit line.
	Profile string
}

// liveLog is the file every running job writes, which the tour follows with tail -f.
const liveLog = "process_output.log"

// filterCandidates are texts tried, in order, for the tour's @ filter: the first that matches some but
// not all of the completed job's files wins.
var filterCandidates = []string{"log", "U", "p"}

// findDemoFacts asks the platform for the jobs the tour names. It fails if the sample set lacks one:
// a tour with a placeholder in it would not run as printed.
func findDemoFacts(ctx context.Context, c *remote.Client) (demoFacts, error) {
	var f demoFacts
	jobs, err := c.ListJobs(ctx, nil)
	if err != nil {
		return f, err
	}
	// Smallest first: the completed job to copy should copy in a moment.
	slices.SortStableFunc(jobs, func(a, b remote.Job) int { return int(a.Storage - b.Storage) })
	for _, j := range jobs {
		st, err := c.JobStatuses(ctx, j.ID)
		if err != nil {
			return f, err
		}
		switch {
		case !st.Completed():
			f.Running = j.ID
		case st.Succeeded() && f.Completed == "" && shellSafe(j.ID):
			files, err := c.JobFiles(ctx, j.ID, "")
			if err != nil {
				return f, err
			}
			if filter := pickFilter(files); filter != "" {
				f.Completed, f.Filter = j.ID, filter
			}
		case !st.Succeeded() && f.Failed == "":
			f.Failed = j.ID
		}
	}
	lib, err := c.LibraryFiles(ctx, "")
	if err != nil {
		return f, err
	}
	for _, l := range lib {
		if shellSafe(l.Name) {
			f.LibraryFile = l.Name
			break
		}
	}
	if f.Completed == "" || f.Failed == "" || f.Running == "" || f.LibraryFile == "" {
		return f, errors.New("the demo platform lacks a job or file the tour needs")
	}
	return f, nil
}

func pickFilter(files []remote.File) string {
	for _, text := range filterCandidates {
		n := 0
		for _, fl := range files {
			if strings.Contains(fl.Name, text) {
				n++
			}
		}
		if n > 0 && n < len(files) {
			return text
		}
	}
	return ""
}

var shellWord = regexp.MustCompile(`^[A-Za-z0-9._/@+-]+$`)

// shellSafe: pasted as is, the word means itself to a shell.
func shellSafe(s string) bool { return shellWord.MatchString(s) }

// demoTour is the tour of the demo mounted at m (as the user should type it).
func demoTour(m string, f demoFacts) []tourStep {
	job := func(id string) string { return m + "/jobs/" + id }
	steps := []tourStep{
		{"ls -l " + m + "/jobs", "every job, as a folder (mtime: its latest status)", false},
		{"ls " + m + "/by-name", "the same jobs by name", false},
		{"cp -r " + job(f.Completed) + " /tmp/", "copy a completed job's outputs (parallel ranged reads)", false},
		{"find " + job(f.Completed) + "/@" + f.Filter + " -type f", "lookup-only filter: its files whose name contains \"" + f.Filter + "\"", false},
		{"ls -lt " + m + "/completed", "jobs that completed, newest first; running ones join as they finish", false},
		{"tail -3 " + m + "/failed/" + f.Failed + "/" + liveLog, "failed/ holds the completed jobs that did not succeed", false},
		{"tail -F " + job(f.Running) + "/" + liveLog, "a running job's live log, once its run starts (Ctrl-C to stop)", false},
		{"getfattr -d " + job(f.Running), "status, name and owner as extended attributes", false},
		{"ls -l " + m + "/files", "your library, e.g. " + f.LibraryFile, false},
		{"cp /etc/os-release " + m + "/uploads/", "publish a file: it moves to files/ once the platform has it", false},
		{"rescalefs status --watch " + m, "follow uploads and open files until nothing is left to send", false},
	}
	if f.Profile != "" {
		// The regression suite is in the demo's library (demo_suite.go); the emulator runs the job here.
		steps = append(steps, tourStep{"rescalefs submit --config " + f.Profile + " --profile demo --name nightly" +
			" --core-type Marble --input files/build.tar.gz --input files/tests.tar.gz --input files/compare.sh" +
			" --command 'bash run_tests.sh' --post-command ./compare.sh --fail-on '^FAILURE' --wait --follow",
			"run the demo's regression suite as a job; the exit code is the outcome (see README, Jobs)", true})
	}
	steps = append(steps, tourStep{"cat " + m + "/.rescalefs/status", "the mount's live state as JSON", false})
	return steps
}

// tourReadyTimeout bounds how long the demo waits for its mount to show what the tour names.
const tourReadyTimeout = 15 * time.Second

// waitTourPaths waits until the mount at mnt shows the tour's jobs where the tour says: the job list and
// states come from the mount's first poll, which may end just after the mount is ready, and a tour
// whose failed/ is still empty would not run as printed.
func waitTourPaths(mnt string, f demoFacts) error {
	paths := []string{
		filepath.Join(mnt, "completed", f.Completed),
		filepath.Join(mnt, "failed", f.Failed, liveLog),
		filepath.Join(mnt, "jobs", f.Running),
		filepath.Join(mnt, "files", f.LibraryFile),
	}
	deadline := time.Now().Add(tourReadyTimeout)
	for _, p := range paths {
		for {
			_, err := os.Stat(p)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the demo mount does not show %s yet: %w", p, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// printDemoTour prints the tour for the mountpoint, relative to the working directory when shorter.
func printDemoTour(w io.Writer, mountpoint, url string, f demoFacts) {
	m := mountpoint
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, mountpoint); err == nil && len(r) < len(mountpoint) && filepath.IsLocal(r) {
			m = r
		}
	}
	fmt.Fprintf(w, "\nThe emulated Rescale platform (%s) is mounted at %s. Try, in another terminal:\n\n", url, m)
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	var long []tourStep // commands too long for the table's column: after it, the comment above each
	for _, s := range demoTour(m, f) {
		if s.Long {
			long = append(long, s)
			continue
		}
		fmt.Fprintf(tw, "  %s\t# %s\n", s.Cmd, s.Why)
	}
	tw.Flush()
	for _, s := range long {
		fmt.Fprintf(w, "\n  # %s\n  %s\n", s.Why, s.Cmd)
	}
	fmt.Fprintln(w, "\nPress Ctrl-C to unmount and stop.")
}
