package fs_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/fs/fusetest"
)

// TestStatusListsLiveReads: a tail -f of a running job's log is an open file in .rescalefs/status (it
// was not listed at all), marked live; once the job completes and the reader switches to the uploaded
// log, it is listed once, as an ordinary file read to its end.
func TestStatusListsLiveReads(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: liveJobs(), Lifecycle: liveLifecycle})
	logPath := filepath.Join(env.Dir, "jobs/Live1/process_output.log")
	fusetest.Eventually(t, 10*time.Second, "a live process_output.log", func() bool {
		d, err := env.Client.Tail(fusetest.Context(t), "Live1", "1", "process_output.log")
		return err == nil && len(d) > 0
	})
	out, _ := startLiveTail(t, logPath)
	logs := func() []fs.DownloadStatus {
		var l []fs.DownloadStatus
		for _, d := range env.Mount.Status().Downloads {
			if d.Name == "process_output.log" {
				l = append(l, d)
			}
		}
		return l
	}
	fusetest.Eventually(t, 10*time.Second, "the live log listed as read, live", func() bool {
		l := logs()
		return len(l) == 1 && l[0].Live && l[0].Read > 0 && !l[0].LastRead.IsZero()
	})
	if st := env.Mount.Status(); st.Transfers.Reads == 0 || st.Transfers.BytesRead == 0 {
		t.Errorf("live reads not counted: %+v", st.Transfers)
	}
	if err := env.Emulator.CompleteJob("Live1"); err != nil {
		t.Fatal(err)
	}
	fusetest.Eventually(t, 20*time.Second, "tail -f reaching the end of the log", func() bool {
		return strings.HasSuffix(out.String(), "Run 1 exited with status 0\n")
	})
	fusetest.Eventually(t, 10*time.Second, "the log listed once, as a file read to its end", func() bool {
		l := logs()
		return len(l) == 1 && !l[0].Live && l[0].Size > 0 && l[0].Offset == l[0].Size
	})
}
