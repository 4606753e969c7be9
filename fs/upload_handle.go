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
	k, err := h.n.w.ReadAt(dest, off)
	if err != nil {
		return nil, h.n.f.errno("read "+h.n.w.Name(), err)
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (h *uploadHandle) Write(_ context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	if !h.writable {
		return 0, syscall.EBADF
	}
	k, err := h.n.w.WriteAt(data, off)
	return uint32(k), h.n.f.errno("write "+h.n.w.Name(), err)
}

// Flush comes at every close of a descriptor (several for dup'ed ones): a changed file is sealed
// (durably recorded as closed at its size) and starts (or restarts) its settle wait. Safe to repeat.
func (h *uploadHandle) Flush(context.Context) syscall.Errno {
	if h.writable {
		return h.n.f.errno("close "+h.n.w.Name(), h.n.w.Closed())
	}
	return 0
}

// Fsync makes the staging data durable (it is synced again before it is queued).
func (h *uploadHandle) Fsync(context.Context, uint32) syscall.Errno {
	return h.n.f.errno("fsync "+h.n.w.Name(), h.n.w.Fsync())
}

// Release: the last writer gone, a changed file is sealed (if no Flush did) and its settle wait starts.
func (h *uploadHandle) Release(context.Context) syscall.Errno {
	h.releaseOnce.Do(func() { h.n.w.Release(h.writable) })
	return 0
}
