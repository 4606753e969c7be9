package fs

import (
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/rescalefs/rescalefs/remote"
)

// Modes: everything outside uploads/ is read-only for everyone.
const (
	dirMode  = syscall.S_IFDIR | 0o555
	fileMode = syscall.S_IFREG | 0o444
	linkMode = syscall.S_IFLNK | 0o777
)

// fileBlksize is the st_blksize of files. cp, cat and friends size their buffer from it (coreutils takes
// the larger of the source's and the destination's, at least 128 KiB), so it sets the size of every
// write of a copy out of the mount into its destination. It is 128 KiB, what cp uses between local
// files, not 1 MiB: the size of the FUSE requests does not follow it (the kernel's read-ahead sends
// up to 1 MiB per request whatever the reads), but the destination's cost does. ext4 caches a 1 MiB
// write in large folios, and on a VM whose free memory goes back to the host (virtio-balloon free page
// reporting, as on our CI machines) each large folio is fresh host memory: writing 1 GiB with 1 MiB
// writes took 1.2-1.4 s of system time against 0.2 s with 128 KiB ones (dd after 5 s idle), and a cold
// cp out of the mount spent 1.2-1.6 CPU seconds against 0.4-0.9 (issue 11's note). On other machines
// 128 KiB costs nothing measurable: reads are served from the page cache either way.
const fileBlksize = 128 << 10

func setTimes(a *fuse.Attr, t time.Time) {
	if t.IsZero() {
		return
	}
	a.SetTimes(&t, &t, &t)
}

// fileAttr fills a file's attributes: size and mtime from the API, st_blocks from the size so du
// reports real use.
func fileAttr(a *fuse.Attr, f *remote.File) {
	a.Mode = fileMode
	a.Nlink = 1
	a.Size = uint64(max(f.DecryptedSize, 0))
	a.Blksize = fileBlksize
	a.Blocks = (a.Size + 511) / 512 // st_blocks counts 512-byte units whatever st_blksize says
	setTimes(a, f.DateUploaded.Time)
}

// dirAttr fills a folder's attributes. Size 0, so `du -sb` of a job is exactly the sum of its files.
// nlink is 2 + sub-folders, as find expects; 1 where that is unknown (the "don't know" convention).
func dirAttr(a *fuse.Attr, mtime time.Time, subdirs int) {
	a.Mode = dirMode
	if subdirs < 0 {
		a.Nlink = 1
	} else {
		a.Nlink = uint32(2 + subdirs)
	}
	setTimes(a, mtime)
}

func linkAttr(a *fuse.Attr, target string, mtime time.Time) {
	a.Mode = linkMode
	a.Nlink = 1
	a.Size = uint64(len(target))
	setTimes(a, mtime)
}
