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

// The st_blksize of files. cp, cat and friends size their buffer from it (coreutils takes the larger of
// the source's and the destination's, at least 128 KiB), so it sets the size of every read they make of
// a file and of every write of a copy of it.
const (
	// cachedBlksize is that of files read through the page cache (outputs, the library): 256 KiB. The
	// FUSE requests do not follow it there (the kernel's read-ahead asks for up to 1 MiB per request
	// whatever the reads: TestKernelIOSizes), but a copy's destination does: ext4 caches a 1 MiB write
	// in large folios, and on a VM whose free memory goes back to its host (virtio-balloon free page
	// reporting, as on our CI machines) each large folio is fresh host memory. A cold cp of 1 GiB out of
	// a fresh mount spent 0.6-1.4 CPU seconds in cp with 1 MiB, 0.44-0.50 with 256 KiB, and under load
	// that CPU is what the copy waits for (issue 11's note). 128 KiB saved no more and cost the mount
	// more small reads.
	cachedBlksize = 256 << 10
	// requestBlksize is that of files each of whose reads or writes is one FUSE request (live files,
	// DIRECT_IO; uploads/): 1 MiB, the largest request, so a copy makes few.
	requestBlksize = 1 << 20
)

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
	a.Blksize = cachedBlksize
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
