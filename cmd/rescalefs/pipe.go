package main

import (
	"context"
	"errors"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// catchBrokenPipe makes a write to a closed pipe on stdout or stderr fail with EPIPE instead of killing
// the process, for as long as a mount may exist. Go's runtime kills a program that writes to a broken
// pipe on fd 1 or 2 unless it asked for SIGPIPE with signal.Notify (see os/signal), and a process killed
// while it serves a FUSE mount leaves the mount dead ("Transport endpoint is not connected") for every
// program that walks the mounts. The channel is never read: Notify drops what does not fit, and the
// failed write is what the callers act on (or ignore: a log line nobody reads).
func catchBrokenPipe() (stop func()) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGPIPE)
	return func() { signal.Stop(c) }
}

// errStdoutClosed ends the demo when nobody reads its output any more.
var errStdoutClosed = errors.New("standard output closed; stopped")

// endOnWriteError passes writes through to w and, when one fails (the reader of a pipe went away, a
// terminal hung up), calls end: output nobody can see is the demo's whole point gone.
type endOnWriteError struct {
	w   io.Writer
	end context.CancelCauseFunc
}

func (o endOnWriteError) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		o.end(errStdoutClosed)
	}
	return n, err
}
