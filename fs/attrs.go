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

// fileBlksize is the st_blksize of files: cp, rsync and friends size their reads from it, and 1 MiB
// (the largest FUSE read) means few, large requests.
const fileBlksize = 1 << 20

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
