package fs

import (
	"context"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// uploadHandle is an open file in uploads/.
type uploadHandle struct {
	n        *uploadFile
	writable bool

	releaseOnce sync.Once
}

func (h *uploadHandle) Read(_ context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	k, errno := h.n.readAt(dest, off)
	if errno != 0 {
		return nil, errno
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (h *uploadHandle) Write(_ context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.writable {
		return 0, syscall.EBADF
	}
	k, errno := h.n.writeAt(data, off)
	return uint32(k), errno
}

// Flush comes at every close of a descriptor (several for dup'ed ones): a changed file is sealed
// (durably recorded as closed at its size, so a crash of the mount cannot lose it) and starts (or
// restarts) its settle wait. Safe to repeat: sealed once, the settle timer re-armed, the version
// queued once.
func (h *uploadHandle) Flush(context.Context) syscall.Errno {
	if h.writable {
		return h.n.closed()
	}
	return 0
}

// Fsync makes the staging data durable (it is synced again before it is queued).
func (h *uploadHandle) Fsync(context.Context, uint32) syscall.Errno {
	n := h.n
	n.mu.RLock()
	defer n.mu.RUnlock()
	if !n.owned || n.gone {
		return 0
	}
	return n.f.errno("fsync "+n.name, n.data.Sync())
}

// Release: the last writer gone, a changed file is sealed (if no Flush did) and its settle wait starts
// (settled skips files still open for writing).
func (h *uploadHandle) Release(context.Context) syscall.Errno {
	h.releaseOnce.Do(func() {
		n := h.n
		n.mu.Lock()
		n.opens--
		if h.writable {
			n.writers--
			if n.writers == 0 && n.dirty && !n.gone {
				n.recovered = ""
				if err := n.sealLocked(); err != nil { // normally sealed by Flush already
					n.f.logErr("seal "+n.name, err)
				}
				n.armLocked()
			}
		}
		if n.gone && n.opens == 0 {
			n.data.Close()
		}
		n.mu.Unlock()
	})
	return 0
}
