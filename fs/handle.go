package fs

import (
	"context"
	"errors"
	"io"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rescalefs/rescalefs/cache"
)

// handle is one open file. Its reader detects sequential access for this handle alone, so two
// programs reading one file (one streaming, one seeking) do not spoil each other's read-ahead.
type handle struct {
	f    *fsys
	node *fileNode
	r    fileReader

	closeOnce sync.Once
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	size := h.node.file.DecryptedSize
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	h.f.stats.reads.Add(1)
	b, err := h.r.ReadRef(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		h.f.stats.readErrors.Add(1)
		if errors.Is(err, cache.ErrChecksumMismatch) {
			// The bytes handed out earlier were wrong and the cache has dropped them; the kernel
			// must drop its copy too. Not from inside this handler (the page being read is locked
			// until we answer): from a goroutine, which waits for that.
			go h.node.NotifyContent(0, 0)
		}
		return nil, h.f.errno("read "+h.node.file.ID, err)
	}
	h.f.stats.bytesRead.Add(int64(len(b)))
	return fuse.ReadResultData(b), 0
}

// Flush may come several times (dup'ed descriptors); nothing to do for a read-only file.
func (h *handle) Flush(context.Context) syscall.Errno { return 0 }

// Release drops the reader; read-ahead in flight still lands in the cache for the next reader.
func (h *handle) Release(context.Context) syscall.Errno {
	h.closeOnce.Do(func() { h.r.Close() })
	return 0
}
