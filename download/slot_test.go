package download

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// A job stopped by a full disk gives back every file slot it took: the loop that hands out slots
// used to win a slot and a cancelled context at the same moment, break, and keep the slot, so after
// --parallel such stops nothing downloaded again.
func TestDiskFullGivesBackItsSlots(t *testing.T) {
	e := newEnv(t)
	const jobs = 24
	var ids []string
	for i := range jobs {
		files := []emulator.FileSpec{{RelativePath: "full.dat", Size: testBlock}}
		for k := range 6 {
			files = append(files, emulator.FileSpec{RelativePath: fmt.Sprintf("after%d.dat", k), Size: 100})
		}
		j := e.addJob(t, emulator.JobSpec{Name: fmt.Sprintf("job %d", i), Files: files})
		ids = append(ids, j.ID)
	}
	d := e.start(t, Options{Parallel: 2}, func(d *Downloader) {
		d.writeAt = func(f *os.File, p []byte, off int64) (int, error) {
			if strings.Contains(f.Name(), "full.dat") {
				return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
			}
			return f.WriteAt(p, off)
		}
	})
	waitFor(t, "every job stopped by the full disk", func() bool {
		for _, id := range ids {
			if js, ok := jobStatus(d, id); !ok || js.State != "failed" {
				return false
			}
		}
		return true
	})
	waitFor(t, "every file slot given back", func() bool { return len(d.fileSem) == 0 })
}
