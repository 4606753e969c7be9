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
	watch := fl.BoolP("watch", "w", false, "refresh until nothing is settling, uploading or being read through")
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
	Platform     *platformStatus
}

// statusExtra is what the mount adds to its status file under "extra": the automatic downloads, when
// on, and the platform's address and last error (its health is in the status's own "platform").
func statusExtra(obs *platformObserver, apiURL string, dl *download.Downloader) any {
	var x struct {
		AutoDownload *download.Status `json:"autoDownload,omitempty"`
		Platform     platformStatus   `json:"platform"`
	}
	if dl != nil {
		snap := dl.Snapshot()
		x.AutoDownload = &snap
	}
	x.Platform = obs.status(apiURL)
	return x
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
			Platform     *platformStatus  `json:"platform"`
		} `json:"extra"`
	}
	if err := json.Unmarshal(b, &st.Status); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(b, &extra); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	st.AutoDownload, st.Platform = extra.Extra.AutoDownload, extra.Extra.Platform
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

// activeWindow is how recently an open file must have been read for --watch to wait for it: a copy in
// progress reads continually; a file left open (a viewer, tail -f at its end) does not hold --watch.
const activeWindow = 5 * time.Second

// settled: nothing left to watch. --watch waits while a file of uploads/ is being written or settling,
// while an upload is queued, sending or about to retry, while an automatic download runs, and while a
// file is being read through to its end. Failed and damaged uploads wait for a person, not for time;
// running jobs' live files have no end.
func settled(st mountState) bool {
	return len(busy(st)) == 0
}

// busy says what keeps --watch waiting, one short phrase each.
func busy(st mountState) []string {
	var out []string
	if n := len(st.Settling); n > 0 {
		out = append(out, fmt.Sprintf("%d settling", n))
	}
	var sending, failed int
	for _, u := range st.Uploads {
		switch u.State {
		case upload.StateQueued, upload.StateUploading, upload.StateRetrying:
			sending++
		case upload.StateFailed:
			failed++
		}
	}
	// An upload the engine has finished is still on its way until the mount shows it in files/. The
	// mount's count of those (Publishing) is of every file handed to the engine and not yet shown,
	// so it also holds the failed ones, which wait for a person, not for time: --watch must not wait
	// on them.
	sending = max(sending, st.Publishing-failed)
	if sending > 0 {
		out = append(out, fmt.Sprintf("%d uploading", sending))
	}
	if n := len(activeReads(st)); n > 0 {
		out = append(out, fmt.Sprintf("%d reading", n))
	}
	if n := len(activeAutoDownloads(st)); n > 0 {
		out = append(out, fmt.Sprintf("%d auto-downloading", n))
	}
	return out
}

// activeReads are the open files being read through: not live, not yet read to their end, and read
// (or opened) within activeWindow of the status's time.
func activeReads(st mountState) []rfs.DownloadStatus {
	var out []rfs.DownloadStatus
	for _, d := range st.Downloads {
		last := d.LastRead
		if last.IsZero() {
			last = d.Opened
		}
		if !d.Live && d.Offset < d.Size && st.Time.Sub(last) < activeWindow {
			out = append(out, d)
		}
	}
	return out
}

// platformLine says when the platform last answered, as of the status's time, as the API client judges
// it (the status's own "platform", which --metrics reports too); the last error, from the transport,
// only while calls are failing (down, or retrying).
func platformLine(st mountState) string {
	p, h := st.Platform, st.Status.Platform
	if p == nil {
		return ""
	}
	s := "platform " + p.URL + ": "
	switch {
	case h == nil || h.LastAnswer.IsZero():
		s += "no answer yet"
	default:
		s += "last answered " + ago(st.Time.Sub(h.LastAnswer))
	}
	if h != nil && (h.Down || h.Retrying > 0) && p.LastError != "" {
		s += "; last error: " + p.LastError
	}
	return s
}

func ago(d time.Duration) string {
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds ago", int(d.Minutes()), int(d.Seconds())%60)
	}
	return d.Round(time.Minute).String() + " ago"
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
	fmt.Fprintf(w, "%s: %d jobs, %d uploads pending, %d settling, %d files open\n", mnt, st.Jobs, len(pend), len(st.Settling), len(st.Downloads))
	if l := platformLine(st); l != "" {
		fmt.Fprintln(w, l)
	}
	for _, name := range st.Settling {
		fmt.Fprintf(w, "  settling %-32s queued once left unwritten\n", name)
	}
	for _, u := range st.Uploads {
		fmt.Fprintf(w, "  upload   %-32s %s%s\n", u.Name, textBar(bars, u.Done, u.Size), uploadLine(u))
	}
	printKept(w, st)
	for _, d := range st.Downloads {
		if d.Live {
			fmt.Fprintf(w, "  live     %-32s %s read (a running job's file)\n", d.Name, units.Human(d.Read))
			continue
		}
		fmt.Fprintf(w, "  read     %-32s %s%s / %s (%.0f%%)\n", d.Name, textBar(bars, d.Offset, d.Size),
			units.Human(d.Offset), units.Human(d.Size), pct(d.Offset, d.Size))
	}
	if ad := st.AutoDownload; ad != nil {
		fmt.Fprintf(w, "auto-download to %s: %d jobs, %d active\n", ad.Dir, len(ad.Jobs), len(activeAutoDownloads(st)))
		for _, j := range ad.Jobs {
			fmt.Fprintf(w, "  job      %-32s %s%s\n", j.ID, textBar(bars, j.BytesDone, j.BytesTotal), autoDownloadLine(j))
		}
	}
	fmt.Fprintln(w, cacheLine(st))
	if line := diskLine(st.Cache); line != "" {
		fmt.Fprintln(w, line)
	}
	if line := healthLine(st.Status.Platform); line != "" {
		fmt.Fprintln(w, line)
	}
	if line := waitingLine(st.Waiting); line != "" {
		fmt.Fprintln(w, line)
	}
}

// printKept lists the files the mount left in the library after a lost answer (a crash, a cut
// connection) because it cannot tell them from another tool's upload of the same bytes (fs.KeptFile):
// the user decides. Shown until the mount stops.
func printKept(w io.Writer, st mountState) {
	if len(st.Kept) == 0 {
		return
	}
	fmt.Fprintf(w, "%s kept in the library after a lost answer, not deleted (delete the unwanted ones on the platform):\n",
		plural(len(st.Kept), "file"))
	for _, k := range st.Kept {
		fmt.Fprintf(w, "  kept     %-32s %s\n", k.Path, k.Why)
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
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
	var mu sync.Mutex           // guards info, header and footer
	info := map[string]string{} // bar key -> the text after it
	header, footer := "", ""
	setText := func(key, text string) { mu.Lock(); info[key] = text; mu.Unlock() }
	textLine := func(text *string) *mpb.Bar {
		return p.New(0, mpb.NopStyle(), mpb.BarFillerClearOnComplete(),
			mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { mu.Lock(); defer mu.Unlock(); return *text })))
	}
	// The header says what --watch waits for and when the platform last answered; the cache goes last.
	head := textLine(&header)
	foot := textLine(&footer)
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
		header = fmt.Sprintf("%s: %d jobs", mnt, st.Jobs)
		if b := busy(st); len(b) > 0 {
			header += "; waiting: " + strings.Join(b, ", ")
		} else {
			header += "; nothing left to wait for"
		}
		if l := platformLine(st); l != "" {
			header += "; " + l
		}
		if h := st.Status.Platform; h != nil && h.Down {
			header += "; " + healthLine(h)
		}
		if l := waitingLine(st.Waiting); l != "" {
			header += "; " + l
		}
		if n := len(st.Kept); n > 0 {
			header += "; " + plural(n, "file") + " kept in the library after a lost answer (rescalefs status lists them)"
		}
		footer = cacheLine(st)
		if l := diskLine(st.Cache); l != "" {
			footer += "; " + l
		}
		mu.Unlock()
		seen := map[string]bool{}
		for _, name := range st.Settling {
			key := "settling:" + name
			seen[key] = true
			bar(key, name, 1)
			setText(key, "settling: queued once left unwritten")
		}
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
		for _, d := range activeReads(st) {
			key := "read:" + d.FileID
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
			if !seen[key] && strings.HasPrefix(key, "settling:") {
				b.Abort(true) // queued now: its upload row takes over
				delete(bars, key)
				continue
			}
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
	foot.SetTotal(-1, true)
	p.Wait()
	return code
}
