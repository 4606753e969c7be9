package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/remote/emulator"
)

// TestStopRunOfDOE: `rescalefs stop JOB --run N` stops one run of a DOE through the platform's run
// stop (POST .../runs/{run}/stop/); the job's other runs go on to their end. --run with several jobs is a
// usage error; an unknown run is one line and exit 1.
func TestStopRunOfDOE(t *testing.T) {
	emu := startRunJobsEmulator(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "params.csv"), []byte("x\n1\n2\n3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := emu.submit(t, dir, "--name", "sweep", "--core-type", "Marble", "--doe-params", "params.csv",
		"--slots", "1", "--command", `if [ "$x" = 2 ]; then echo waiting; sleep 300; fi; echo "$x" > result.txt`)
	id := strings.TrimSpace(out)
	if code != 0 || id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("submit: exit %d, stdout %q\n%s", code, out, errs)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		var page struct {
			Results []struct {
				ID            string
				DateStarted   *string
				DateCompleted *string
			}
		}
		emu.api(t, "/api/v2/jobs/"+id+"/runs/", &page)
		if len(page.Results) >= 2 && page.Results[1].DateStarted != nil && page.Results[1].DateCompleted == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("run 2 did not start: %+v", page)
		}
	}
	run := func(args ...string) (int, string, string) {
		cmd := rescalefsCmd(t, emu.env, args...)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), o.String(), e.String()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, o.String(), e.String()
	}
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"stop", id, "other", "--run", "2"}, 2, "--run names runs of one JOB"},
		{[]string{"stop", id, "--run", "9"}, 1, "job " + id + " run 9: "},
		{[]string{"stop", id, "--run", "run2"}, 0, "job " + id + " run 2: stop requested"},
	} {
		code, o, e := run(tc.args...)
		if code != tc.code || !strings.Contains(o+e, tc.out) {
			t.Fatalf("%v: exit %d, want %d with %q\n%s%s", tc.args, code, tc.code, tc.out, o, e)
		}
	}
	// The other runs went on: run 3 waited for the slot run 2 held, and completed.
	code, out, errs = run("wait", "--poll", "100ms", id)
	if code != 3 || !strings.Contains(out, "run 3 (x=3): completed successfully (exit 0)") ||
		!strings.Contains(out, "run 1 (x=1): completed successfully (exit 0)") {
		t.Fatalf("wait: exit %d, want 3 (run 2 did not end well)\n%s\n%s", code, out, errs)
	}
	c := emu.stats(t).Requests
	if c[emulator.EndpointRunStop] != 2 || c[emulator.EndpointJobStop] != 0 {
		t.Fatalf("run stops %d (want 2: run 9 and run 2), job stops %d (want 0)", c[emulator.EndpointRunStop], c[emulator.EndpointJobStop])
	}
}
