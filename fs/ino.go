package fs

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"sync"
)

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

// ino numbers key: a SHA-256 of the key folded to 63 bits (below 2^63, where go-fuse starts its
// automatic numbers), checked against a table of the numbers handed out. Keys hold platform-controlled
// text (job ids, file ids, paths), and go-fuse reuses a node when two objects get one number: with
// FNV-1a, a crafted pair of names could show one file's bytes under the other's name. SHA-256 makes a
// clash expensive to craft, and the table makes one harmless: a key whose number is taken by another
// key gets the next number of its own probe sequence (stable for the life of the process).
func ino(key string) uint64 { return inos.ino(key) }

// inos is the process's table: inode numbers are process state like go-fuse's node table, and a key
// names the same object in every mount of the process.
var inos = newInoTable(sha256Ino)

// maxInoEntries bounds the table (16 bytes a number, about 40 with the map's overhead: 40 MiB at the
// bound). Past it the table starts again: numbers of keys that never clashed do not change; clash
// detection restarts from what is looked up next.
const maxInoEntries = 1 << 20

// inoTable hands out numbers and detects clashes.
type inoTable struct {
	hash func(key string, probe int) (n, check uint64)

	mu      sync.Mutex        // guards byIno, clashes
	byIno   map[uint64]uint64 // number -> check value of the key holding it
	clashes int64             // keys moved off their first number
}

func newInoTable(hash func(string, int) (uint64, uint64)) *inoTable {
	return &inoTable{hash: hash, byIno: map[uint64]uint64{}}
}

// sha256Ino derives probe number probe of key: 63 bits of number (kept clear of the fixed numbers)
// and 64 independent bits that tell keys sharing a number apart.
func sha256Ino(key string, probe int) (n, check uint64) {
	in := key
	if probe > 0 {
		in = key + "\x00" + strconv.Itoa(probe)
	}
	sum := sha256.Sum256([]byte(in))
	n = binary.LittleEndian.Uint64(sum[0:8]) &^ (1 << 63)
	if n < inoFirstHashed {
		n += inoFirstHashed
	}
	return n, binary.LittleEndian.Uint64(sum[8:16])
}

func (t *inoTable) ino(key string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.byIno) >= maxInoEntries {
		clear(t.byIno)
	}
	for probe := 0; ; probe++ {
		n, check := t.hash(key, probe)
		held, ok := t.byIno[n]
		if !ok {
			t.byIno[n] = check
			if probe > 0 {
				t.clashes++
			}
			return n
		}
		if held == check {
			return n
		}
	}
}
