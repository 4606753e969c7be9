package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/download"
	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/internal/units"
	"github.com/rescalefs/rescalefs/upload"
)

// runStatus is `rescalefs status [MOUNTPOINT]`: uploads and open files of a mount with progress bars
// (mpb: many bars at once, added and removed as uploads come and go), and the cache's use. Plain lines
// when stdout is not a terminal.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fl := pflag.NewFlagSet("status", pflag.ContinueOnError)
	fl.SetOutput(io.Discard)
	watch := fl.BoolP("watch", "w", false, "refresh until no upload is pending and no file is open")
	interval := fl.Duration("interval", time.Second, "time between refreshes with --watch")
	usage := func(w io.Writer) {
		fmt.Fprintln(w, "Usage: rescalefs status [flags] [MOUNTPOINT]\n\nShows the uploads, open files, automatic downloads and cache of a rescalefs mount (default: the only one mounted).\n\nFlags:")
		fmt.Fprint(w, fl.FlagUsages())
	}
	if code, done := parseFlags(fl, args, -1, "status", usage, stdout, stderr); done {
		return code
	}
	if fl.NArg() > 1 || *interval <= 0 {
		fmt.Fprintln(stderr, "rescalefs status: want at most one MOUNTPOINT and a positive --interval (see rescalefs status --help)")
		return exitUsage
	}
	mnt := fl.Arg(0)
	if mnt == "" {
		found, err := rescalefsMounts()
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "rescalefs status: %v\n", err)
			return exitFailure
		case len(found) == 0:
			fmt.Fprintln(stderr, "rescalefs status: no rescalefs mount found")
			return exitFailure
		case len(found) > 1:
			fmt.Fprintf(stderr, "rescalefs status: several rescalefs mounts (%s): name one\n", strings.Join(found, ", "))
			return exitUsage
		}
		mnt = found[0]
	}
	path := filepath.Join(mnt, ".rescalefs", "status")
	st, err := readMountStatus(path)
	if err != nil {
		fmt.Fprintf(stderr, "rescalefs status: %v\n", err)
		return exitFailure
	}
	if !*watch {
		printStatus(stdout, mnt, st, isTerminal(stdout))
		return exitOK
	}
	if !isTerminal(stdout) {
		for {
			printStatus(stdout, mnt, st, false)
			if settled(st) {
				return exitOK
			}
			time.Sleep(*interval)
			if st, err = readMountStatus(path); err != nil {
				fmt.Fprintf(stderr, "rescalefs status: %v\n", err)
				return exitFailure
			}
			fmt.Fprintln(stdout)
		}
	}
	return watchBars(stdout, stderr, mnt, path, st, *interval)
}

// mountState is the status file as this command reads it: the mount's own status and, when it runs
// --auto-download, the downloader's (which travels under "extra").
type mountState struct {
	rfs.Status
	AutoDownload *download.Status
}

func readMountStatus(path string) (mountState, error) {
	var st mountState
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read %s: %w (is it a rescalefs mount?)", path, err)
	}
	var extra struct {
		Extra struct {
			AutoDownload *download.Status `json:"autoDownload"`
		} `json:"extra"`
	}
	if err := json.Unmarshal(b, &st.Status); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	st.AutoDownload = extra.Extra.AutoDownload
	return st, nil
}

// activeAutoDownloads are the auto-download jobs still queued or downloading.
func activeAutoDownloads(st mountState) []download.JobStatus {
	if st.AutoDownload == nil {
		return nil
	}
	var out []download.JobStatus
	for _, j := range st.AutoDownload.Jobs {
		if j.State != "done" && j.State != "failed" {
			out = append(out, j)
		}
	}
	return out
}

func autoDownloadLine(j download.JobStatus) string {
	s := fmt.Sprintf("%-11s %d/%d files, %s / %s (%.0f%%)", j.State, j.FilesDone, j.FilesTotal,
		units.Human(j.BytesDone), units.Human(j.BytesTotal), pct(j.BytesDone, j.BytesTotal))
	if j.Rate > 0 {
		s += fmt.Sprintf(" %s/s", units.Human(int64(j.Rate)))
	}
	if len(j.Errors) > 0 {
		s += " - " + j.Errors[len(j.Errors)-1]
	}
	return s
}

// rescalefsMounts lists the mount points of type fuse.rescalefs in /proc/self/mountinfo.
func rescalefsMounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseRescalefsMounts(f), nil
}

func parseRescalefsMounts(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && fields[i+1] == "fuse.rescalefs" && len(fields) > 4 {
				out = append(out, unescapeMountinfo(fields[4]))
			}
		}
	}
	return out
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// pendingUploads are those not yet done (damaged ones count: they need a person).
func pendingUploads(st mountState) []upload.Status {
	var out []upload.Status
	for _, u := range st.Uploads {
		if u.State != upload.StateDone {
			out = append(out, u)
		}
	}
	return out
}

// settled: nothing left to watch (damaged uploads wait for a person, not for time).
func settled(st mountState) bool {
	for _, u := range st.Uploads {
		if u.State != upload.StateDone && u.State != upload.StateDamaged {
			return false
		}
	}
	return len(st.Downloads) == 0 && len(activeAutoDownloads(st)) == 0
}

func pct(done, size int64) float64 {
	if size <= 0 {
		return 100
	}
	return 100 * float64(done) / float64(size)
}

func uploadLine(u upload.Status) string {
	s := fmt.Sprintf("%-10s %s / %s (%.0f%%)", u.State, units.Human(u.Done), units.Human(u.Size), pct(u.Done, u.Size))
	if u.Rate > 0 {
		s += fmt.Sprintf(" %s/s", units.Human(int64(u.Rate)))
	}
	if u.Error != "" && u.State != upload.StateDone {
		s += " - " + u.Error
	}
	return s
}

func cacheLine(st mountState) string {
	c := st.Cache
	if c == nil {
		return "cache: none"
	}
	return fmt.Sprintf("cache: memory %s, disk %s in %d blocks; fetched %s in %d requests, %d in flight",
		units.Human(c.MemoryBytes), units.Human(c.DiskBytes), c.DiskBlocks, units.Human(c.BytesFetched), c.Requests, c.InFlight)
}

// printStatus prints one snapshot as plain lines (bars=true draws the progress as text bars).
func printStatus(w io.Writer, mnt string, st mountState, bars bool) {
	pend := pendingUploads(st)
	fmt.Fprintf(w, "%s: %d jobs, %d uploads pending, %d files open\n", mnt, st.Jobs, len(pend), len(st.Downloads))
	for _, u := range st.Uploads {
		fmt.Fprintf(w, "  upload   %-32s %s%s\n", u.Name, textBar(bars, u.Done, u.Size), uploadLine(u))
	}
	for _, d := range st.Downloads {
		fmt.Fprintf(w, "  download %-32s %s%s / %s (%.0f%%)\n", d.Name, textBar(bars, d.Offset, d.Size),
			units.Human(d.Offset), units.Human(d.Size), pct(d.Offset, d.Size))
	}
	if ad := st.AutoDownload; ad != nil {
		fmt.Fprintf(w, "auto-download to %s: %d jobs, %d active\n", ad.Dir, len(ad.Jobs), len(activeAutoDownloads(st)))
		for _, j := range ad.Jobs {
			fmt.Fprintf(w, "  job      %-32s %s%s\n", j.ID, textBar(bars, j.BytesDone, j.BytesTotal), autoDownloadLine(j))
		}
	}
	fmt.Fprintln(w, cacheLine(st))
	if line := platformLine(st.Platform, st.Time); line != "" {
		fmt.Fprintln(w, line)
	}
}

func textBar(on bool, done, size int64) string {
	if !on {
		return ""
	}
	const width = 20
	n := int(pct(done, size) / 100 * width)
	n = max(0, min(n, width))
	return "[" + strings.Repeat("=", n) + strings.Repeat(" ", width-n) + "] "
}

// watchBars draws live bars for uploads and open files until nothing is left to watch.
func watchBars(stdout, stderr io.Writer, mnt, path string, st mountState, interval time.Duration) int {
	p := mpb.New(mpb.WithOutput(stdout), mpb.WithWidth(40), mpb.WithRefreshRate(interval/2))
	bars := map[string]*mpb.Bar{}
	// The decorators run on mpb's render goroutine while this loop updates their text.
	var mu sync.Mutex           // guards info and header
	info := map[string]string{} // bar key -> the text after it
	header := ""
	setText := func(key, text string) { mu.Lock(); info[key] = text; mu.Unlock() }
	head := p.New(0, mpb.NopStyle(), mpb.BarFillerClearOnComplete(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { mu.Lock(); defer mu.Unlock(); return header })))
	bar := func(key, name string, total int64) *mpb.Bar {
		if b := bars[key]; b != nil {
			return b
		}
		b := p.AddBar(total,
			mpb.PrependDecorators(decor.Name(fmt.Sprintf("%-9s %-28.28s ", strings.SplitN(key, ":", 2)[0], name))),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { mu.Lock(); defer mu.Unlock(); return info[key] })))
		bars[key] = b
		return b
	}
	code := exitOK
	for {
		mu.Lock()
		header = fmt.Sprintf("%s: %d jobs; %s", mnt, st.Jobs, cacheLine(st))
		mu.Unlock()
		seen := map[string]bool{}
		for _, u := range st.Uploads {
			key := "upload:" + u.ID
			seen[key] = true
			b := bar(key, u.Name, max(u.Size, 1))
			setText(key, uploadLine(u))
			b.SetTotal(max(u.Size, 1), false)
			b.SetCurrent(u.Done)
			if u.State == upload.StateDone {
				b.SetTotal(max(u.Size, 1), true)
			}
		}
		for _, d := range st.Downloads {
			key := "download:" + d.FileID
			seen[key] = true
			b := bar(key, d.Name, max(d.Size, 1))
			setText(key, fmt.Sprintf("%s / %s", units.Human(d.Offset), units.Human(d.Size)))
			b.SetCurrent(d.Offset)
		}
		if st.AutoDownload != nil {
			for _, j := range st.AutoDownload.Jobs {
				key := "autodl:" + j.ID
				seen[key] = true
				b := bar(key, j.ID, max(j.BytesTotal, 1))
				setText(key, autoDownloadLine(j))
				b.SetTotal(max(j.BytesTotal, 1), false)
				b.SetCurrent(j.BytesDone)
				if j.State == "done" {
					b.SetTotal(max(j.BytesTotal, 1), true)
				}
			}
		}
		for key, b := range bars {
			if !seen[key] && !b.Completed() {
				b.SetTotal(-1, true) // closed or published: complete at its current value
			}
		}
		if settled(st) {
			break
		}
		time.Sleep(interval)
		var err error
		if st, err = readMountStatus(path); err != nil {
			fmt.Fprintf(stderr, "rescalefs status: %v\n", err)
			code = exitFailure
			break
		}
	}
	for _, b := range bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	head.SetTotal(-1, true)
	p.Wait()
	return code
}
