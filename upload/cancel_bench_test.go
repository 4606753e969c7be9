package upload

import (
	"testing"

	"github.com/rescalefs/rescalefs/remote"
)

// BenchmarkCancelNoWait is what a cancel costs its caller (an unlink in uploads/ of a queued file):
// since the cancel is journaled before it returns, a journal write (two fsyncs) on the engine's disk.
//
//	go test -run '^$' -bench CancelNoWait -benchtime 200x ./upload/
func BenchmarkCancelNoWait(b *testing.B) {
	c, err := remote.New(remote.Options{BaseURL: "http://127.0.0.1:1", APIKey: "unused-0123456789"})
	if err != nil {
		b.Fatal(err)
	}
	eng, err := New(Options{Client: c, Dir: b.TempDir()}) // not started: nothing is sent
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	data := []byte("a queued file\n")
	for b.Loop() {
		b.StopTimer()
		id, err := eng.Enqueue(stagingFile(b, eng, data), "queued.txt")
		if err != nil {
			b.Fatal(err)
		}
		<-eng.CancelsDone() // the previous cancel's background part is not timed
		b.StartTimer()
		if err := eng.CancelNoWait(id); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	<-eng.CancelsDone()
}
