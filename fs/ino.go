package fs

import "hash/fnv"

// Inode numbers are stable for the same remote object, across lookups and across mounts, so tools that
// remember them (rsync, tar's incremental mode, file managers) see the same file as the same file.
// Fixed folders have small fixed numbers; everything else is a hash of a key naming the object:
//
//	"job:"+jobID                    a job folder
//	"file:"+fileID                  an output or library file (the same file id is the same file)
//	"dir:"+jobID+"/"+path           a folder inside a job ("@text" components included for filters)
//	"cdir:"+jobID+"/@text/"+path    a job folder under completed/@text/ (a folder has one parent)
//	"lib:/"+path                    a folder under files/ (only filter folders)
//	"live:"+jobID+"/"+runID+"/"+path   a live file of a running job (path as directory-contents gives it)
//	"link:completed:"+jobID, "link:failed:"+jobID, "link:by-name:"+jobID   symlinks
const (
	inoRoot      = 1
	inoJobs      = 2
	inoCompleted = 3
	inoByName    = 4
	inoFiles     = 5
	inoMeta      = 6 // .rescalefs/
	inoStatus    = 7 // .rescalefs/status
	inoUploads   = 8
	inoFailed    = 9

	// inoFirstHashed keeps hashed numbers clear of the fixed ones.
	inoFirstHashed = 1 << 10
)

// ino hashes key into an inode number below 2^63, where go-fuse starts its automatic numbers.
func ino(key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	n := h.Sum64() &^ (1 << 63)
	if n < inoFirstHashed {
		n += inoFirstHashed
	}
	return n
}
