// Package fs is the FUSE tree of rescalefs: jobs as folders, outputs read through the block cache,
// filter folders, completed jobs, by-name links and the file library. The semantics (trees, names,
// filters, the jobs model) are FUSE-free and table-tested; the nodes are a thin go-fuse adapter.
package fs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/remote"
)

// Mounted is a live mount.
type Mounted struct {
	server     *fuse.Server
	fsys       *fsys
	poller     *poller
	mountpoint string

	done     chan struct{} // closed once the server has stopped serving (unmounted, by us or not)
	stopOnce sync.Once
}

// Mount mounts the tree at mountpoint and returns once the kernel serves it; the jobs list is then
// fetched in the background and refreshed every Options.Poll.
func Mount(mountpoint string, opts Options) (*Mounted, error) {
	if opts.Client == nil {
		return nil, errors.New("fs: no platform client")
	}
	if opts.Cache == nil {
		return nil, errors.New("fs: no block cache")
	}
	c := opts.Cache
	return mount(mountpoint, opts, opts.Client, func(f *remote.File) fileReader {
		return c.NewReader(cache.Object{ID: f.ID, Size: f.DecryptedSize}, f.SHA512())
	})
}

// mount is Mount with the platform and the readers given (tests pass fakes).
func mount(mountpoint string, opts Options, client platform, newReader func(*remote.File) fileReader) (*Mounted, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, err
	}
	if opts.FileSeen != nil {
		client = registering{client, opts.FileSeen}
	}
	f := newFsys(opts, client, newReader)
	f.newReader = f.io.dl.track(f.now, f.newReader)
	if opts.Uploads != nil {
		f.io.up = newUploads(f, opts.Uploads, opts.UploadSettle, opts.UploadHold)
	}
	fo, err := f.opts.fuseOptions(f.log)
	if err != nil {
		f.cancel()
		return nil, err
	}
	server, err := serveFS(abs, &rootNode{base: base{f: f}}, fo) // owner.go
	if err != nil {
		f.cancel()
		return nil, fmt.Errorf("mount %s: %w", abs, err)
	}
	m := &Mounted{server: server, fsys: f, mountpoint: abs, done: make(chan struct{})}
	raiseReadahead(abs, f)
	m.poller = f.startPoller()
	go func() {
		server.Wait()
		m.stop()
		close(m.done)
	}()
	return m, nil
}

// stop ends the background work: first every platform call in flight (the tree's context), then the
// poller and the shared calls are waited for. The other way round, a poll round stuck on a platform
// that does not answer held the unmount for as long as the round's retries lasted.
func (m *Mounted) stop() {
	m.stopOnce.Do(func() {
		m.fsys.cancel()
		m.poller.halt()
		m.fsys.calls.close()
	})
}

// Mountpoint is the absolute path mounted.
func (m *Mounted) Mountpoint() string { return m.mountpoint }

// Wait blocks until the file system is unmounted (by Unmount, umount or fusermount3 -u).
func (m *Mounted) Wait() { <-m.done }

// Unmount stops the background work and unmounts. It fails (EBUSY) while a program has a file or the
// working directory open on the mount; the mount then goes on serving.
func (m *Mounted) Unmount() error {
	select {
	case <-m.done:
		return nil // already unmounted from outside
	default:
	}
	if err := m.server.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", m.mountpoint, err)
	}
	<-m.done
	return nil
}

// raiseReadahead raises the kernel read-ahead of the mount to maxReadAhead: the FUSE init reply can
// only lower it from the kernel's default (128 KiB), but root may raise it through the mount's bdi,
// so sequential reads arrive as 1 MiB requests. Best effort: a user mount simply keeps the default.
func raiseReadahead(mountpoint string, f *fsys) {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return
	}
	p := "/sys/class/bdi/" + strconv.Itoa(int(unix.Major(st.Dev))) + ":" + strconv.Itoa(int(unix.Minor(st.Dev))) + "/read_ahead_kb"
	if err := os.WriteFile(p, []byte(strconv.Itoa(maxReadAhead>>10)), 0); err != nil && !errors.Is(err, syscall.EACCES) {
		f.log.Debug("kernel read-ahead left at its default", "path", p, "err", err)
	}
}
