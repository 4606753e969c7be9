package fs

import (
	"bytes"
	"testing"
	"time"
)

// An open live file keeps only the last liveWindow bytes, appends what a ranged refresh brings, and a
// platform that ignores Range gets whole-file refreshes paced by the file's size.
func TestLiveWindow(t *testing.T) {
	f := newFsys(Options{}, nil, nil)
	defer f.cancel()
	lf := &liveFile{f: f, opens: 1}
	whole := bytes.Repeat([]byte("0123456789abcdef"), (liveWindow+4<<20)/16)
	got := lf.appendLocked(0, whole)
	if lf.size != int64(len(whole)) || len(got.data) != liveWindow || got.base != int64(len(whole)-liveWindow) ||
		!bytes.Equal(got.data, whole[got.base:]) {
		t.Fatalf("first tail: size %d, window [%d,+%d)", lf.size, got.base, len(got.data))
	}
	more := []byte("new line\n")
	got = lf.appendLocked(lf.size, more)
	if lf.size != int64(len(whole)+len(more)) || len(got.data) != liveWindow || !bytes.HasSuffix(got.data, more) ||
		got.base+int64(len(got.data)) != lf.size {
		t.Fatalf("ranged refresh: size %d, window [%d,+%d)", lf.size, got.base, len(got.data))
	}
	// A refresh for an offset that is no longer the end (a concurrent one moved it) changes nothing.
	if again := lf.appendLocked(5, more); again.base != got.base || len(again.data) != len(got.data) {
		t.Fatal("a stale refresh moved the window")
	}
	if d := lf.intervalLocked(); d != liveInterval {
		t.Errorf("ranged interval %v", d)
	}
	lf.noRange = true
	if d, want := lf.intervalLocked(), liveInterval*time.Duration(1+lf.size/liveWindow); d != want || d <= liveInterval {
		t.Errorf("interval without Range for %d bytes: %v, want %v", lf.size, d, want)
	}
}
