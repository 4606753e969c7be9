package fs

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/rescalefs/rescalefs/remote"
)

// errno maps an error to what the kernel is told. It is the only place that does: go-fuse's own
// ToErrno compares by equality, so a wrapped error would become ENOSYS. Unknown errors are logged
// (once per distinct message) and become EIO.
func (f *fsys) errno(op string, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, remote.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, remote.ErrUnauthorized), errors.Is(err, remote.ErrForbidden):
		f.logErr(op, err) // a revoked key is worth a line in the log
		return syscall.EACCES
	case errors.Is(err, remote.ErrUnavailable):
		// The platform is not answering: the client's health logs that once per outage, not per read.
		return syscall.EIO
	case errors.Is(err, context.Canceled):
		// The caller was interrupted (its request context is cancelled); it retries or gives up.
		return syscall.EINTR
	case errors.Is(err, remote.ErrUnreachable), isNetwork(err):
		// A network failure wraps an errno of the socket (ECONNREFUSED, ECONNRESET): passed through,
		// `cp` would say "Connection refused" about a file. For a file it is an I/O error.
		f.logErr(op, err)
		return syscall.EIO
	}
	// What is left with an errno inside is a local file operation (staging, cache): ENOSPC, EROFS,
	// ENOTEMPTY and the like mean to the caller what they say.
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	f.logErr(op, err)
	return syscall.EIO
}

// isNetwork reports a failure of a network operation. Not net.Error: syscall.Errno implements that
// interface too, and local errnos must pass through.
func isNetwork(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

func isNotFound(err error) bool { return errors.Is(err, remote.ErrNotFound) }

// errLog logs each distinct error message once, so a broken platform does not flood the log with one
// line per read; it keeps at most maxLogged messages, then logs everything again from scratch.
type errLog struct {
	mu   sync.Mutex // protects seen
	seen map[string]bool
}

const maxLogged = 1000

func (f *fsys) logErr(op string, err error) {
	if errors.Is(err, remote.ErrUnavailable) {
		return // an outage: the platform client logs it once when it starts and once when it ends
	}
	msg := op + ": " + err.Error()
	f.errs.mu.Lock()
	if f.errs.seen == nil || len(f.errs.seen) >= maxLogged {
		f.errs.seen = make(map[string]bool)
	}
	dup := f.errs.seen[msg]
	f.errs.seen[msg] = true
	f.errs.mu.Unlock()
	if !dup {
		f.log.Error(op, "err", err)
	}
}
