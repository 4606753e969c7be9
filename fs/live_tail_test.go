package fs_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/fs/fusetest"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// `tail -f` of a growing live log fetches only what is new: the tail endpoint's bytes stay near the
// log's size however many refreshes there were (each refresh used to download the whole log again),
// and what tail prints is a contiguous part of the log.
func TestLiveTailFetchesOnlyNewBytes(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: liveJobs(), Lifecycle: liveLifecycle})
	logPath := filepath.Join(env.Dir, "jobs/Live1/process_output.log")
	fusetest.Eventually(t, 10*time.Second, "a non-empty live log", func() bool {
		b, err := os.ReadFile(logPath)
		return err == nil && len(b) > 0
	})
	bytes0 := env.Emulator.Counters().BytesOut[emulator.EndpointTail]
	req0 := env.Requests(emulator.EndpointTail)
	out, _ := startLiveTail(t, logPath)
	fusetest.Eventually(t, 30*time.Second, "five refreshes under tail -f", func() bool {
		return env.Requests(emulator.EndpointTail)-req0 >= 5 && strings.Count(out.String(), "\n") >= 10
	})
	sent := env.Emulator.Counters().BytesOut[emulator.EndpointTail] - bytes0
	size, err := env.Client.Tail(fusetest.Context(t), "Live1", "1", "process_output.log")
	if err != nil {
		t.Fatal(err)
	}
	// The first refresh of the open file fetches it whole, each later one what was added since.
	if limit := int64(len(size)) + 512; sent > limit {
		t.Errorf("the tail endpoint sent %d bytes in %d requests for a %d-byte log (limit %d): whole-file refreshes",
			sent, env.Requests(emulator.EndpointTail)-req0, len(size), limit)
	}
	final := env.Plaintext(t, fileOf(t, env, "Live1", "process_output.log").ID)
	if s := out.String(); !bytes.Contains(final, []byte(s)) {
		t.Errorf("tail -f output is not a contiguous part of the log:\n%s", s)
	}
	t.Logf("tail endpoint: %d bytes in %d requests for a %d-byte log", sent, env.Requests(emulator.EndpointTail)-req0, len(size))
}

// `ls -l` of a live folder shows sizes from the listing, without a tail request per file.
func TestLiveListingSizes(t *testing.T) {
	env := fusetest.Mount(t, fusetest.Options{Jobs: liveJobs(), Lifecycle: liveLifecycle})
	logPath := filepath.Join(env.Dir, "jobs/Live1/process_output.log")
	tail0 := env.Requests(emulator.EndpointTail)
	fusetest.Eventually(t, 20*time.Second, "a size for the live log in ls -l", func() bool {
		fi, err := os.Stat(logPath)
		return err == nil && fi.Size() > 0
	})
	if n := env.Requests(emulator.EndpointTail) - tail0; n != 0 {
		t.Errorf("stat of a live file nobody has open sent %d tail requests", n)
	}
}
