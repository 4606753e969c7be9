package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/download"
	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
)

// mountLife is the one owner of a served mount's long-lived parts: the FUSE tree (with its poller),
// the upload engine, the automatic downloader, the block cache and the lock on the cache directory.
// Parts are handed to it as they are made; nobody else stops or closes them. end is the only way out
// and runs the shutdown order, written here once:
//
//  1. cancel (stop): the life's context, which the engine and the downloader run under, the tree's
//     context and the cache's fetcher, so every platform call in flight returns now, and a read stuck
//     on a frozen platform fails at once instead of holding the mount (and the unmount) for the
//     network policy's budget. A signal runs this step as soon as it asked the kernel to unmount;
//  2. wait: for the kernel to let the mount go and the tree's pending closes to reach the journal,
//     then for the engine's goroutines and the confirmations it gave the tree (Mounted.WaitUploads),
//     the downloader's, then for the cache's fetches, then for the direct source's storage clients
//     being created (a listing starts one: see remote.DirectSource.Register);
//  3. close: the metrics server (--metrics; its scrapes read the cache and the tree, so it stops first,
//     its scrapes in progress finished), the profiles' server (RESCALEFS_PPROF; it reads nothing of
//     ours, but must not outlive the mount it profiles), the cache's tiers, then the lock, last, so a
//     new mount of the same cache directory can start the moment it is released.
type mountLife struct {
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	mount   *rfs.Mounted
	engine  *upload.Engine
	dl      *download.Downloader
	blocks  *cache.Cache
	direct  *remote.DirectSource // nil without --direct-reads
	metrics func()               // stops the --metrics server once its scrapes in progress are done
	pprof   func()               // stops the RESCALEFS_PPROF server, a profile in progress cut off after a short grace
	unlock  func()

	once sync.Once
}

func newMountLife(log *slog.Logger) *mountLife {
	ctx, cancel := context.WithCancel(context.Background())
	return &mountLife{ctx: ctx, cancel: cancel, log: log}
}

// stop is step 1 of the order above; safe to call more than once, from any goroutine, with parts
// missing.
func (l *mountLife) stop() {
	l.cancel()
	if l.mount != nil {
		l.mount.Cancel()
	}
	if l.blocks != nil {
		l.blocks.Cancel()
	}
}

// end shuts everything down in the order above; safe to call more than once and with parts missing
// (a mount that failed half way).
func (l *mountLife) end() {
	l.once.Do(func() {
		start := time.Now()
		step := func(what string, f func()) {
			t := time.Now()
			f()
			l.log.Debug("shutdown", "step", what, "took", time.Since(t))
		}
		l.stop()
		if l.mount != nil {
			// Unmounted: the tree's context is cancelled and its poller has stopped.
			step("tree", func() { l.mount.Wait(); l.mount.SettleUploads() })
		}
		if l.engine != nil {
			step("uploads", func() {
				l.engine.Close()
				if l.mount != nil {
					l.mount.WaitUploads() // the confirmations the engine gave until it closed
				}
			})
		}
		if l.dl != nil {
			step("auto-download", func() { l.dl.Close() })
		}
		if l.blocks != nil {
			step("fetches", l.blocks.Wait)
		}
		if l.direct != nil {
			step("storage clients", l.direct.Close)
		}
		if l.metrics != nil {
			step("metrics", l.metrics)
		}
		if l.pprof != nil {
			step("pprof", l.pprof)
		}
		if l.blocks != nil {
			step("cache", func() { l.blocks.Close() })
		}
		if l.unlock != nil {
			l.unlock()
		}
		l.log.Debug("shutdown done", "took", time.Since(start))
	})
}

// toResume counts the uploads the next mount resumes: not those the platform refused for good
// (rejected: kept for a person, never sent again as they are), which Engine.Pending counts too.
func toResume(e *upload.Engine) int {
	n := 0
	for _, u := range e.Snapshot() {
		switch u.State {
		case upload.StateQueued, upload.StateUploading, upload.StateRetrying, upload.StateFailed:
			n++
		}
	}
	return n
}
