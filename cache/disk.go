package cache

import (
	"cmp"
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/klauspost/compress/zstd"
)

// Disk tier layout: DIR/<h[:2]>/<h>-<blockSize>-<index>-<gen>, h = hex of the
// first 16 bytes of sha256(objectID) (object ids may hold any byte), gen a
// generation in base 36, new for every write of a block (files written before
// generations, named without one, are still read). Each file is
//
//	header page (diskPage bytes)  magic "RFSB", version, flags, id length,
//	                              object size, block size, index, plaintext
//	                              length, CRC-32C of the plaintext, payload
//	                              length, the id; zero padded
//	payload                       the block, zstd-compressed if flagged, zero
//	                              padded to a whole page
//
// Page-aligned so that files are written and read with O_DIRECT: a buffered
// write costs a copy into the page cache and page-cache bookkeeping (about 2.5
// CPU s per GiB on the 2-core CI machine, more than the rest of a cold read
// together), and a buffered read after the page cache was dropped ran at a
// quarter of the disk's speed. Blocks are read straight into their buffers.
// Filesystems without O_DIRECT (tmpfs) get buffered I/O of the same layout.
//
// The header repeats the whole key, so a hash collision or a renamed file is
// caught like corruption: the file is deleted and the block refetched, never
// returned. Files are written to a temp file and renamed, so a reader never
// sees a partial file; a crash may leave a truncated one, which the checksum
// catches. Files of version 1 (header and payload unaligned) are still read.
//
// Locks, in the order they are taken (never the other way round):
//
//	life       RWMutex: read by every operation that reads, writes or deletes
//	           files (get, put, remove, dropObject, reclaim, markVerified), for
//	           the whole operation; written by close
//	writers    a writer slot (put only)
//	mu         the index, the LRU list and the accounting; held for map and
//	           list work only, never across a file operation
//
// Deleting a file is three steps: under mu its entry leaves the index (from then
// on the block is a miss, never served), then with mu unlocked the file is
// unlinked (the filesystem may be slow: readers and writers of other blocks do
// not wait for it), then under mu again its bytes are counted free. So:
//   - space is counted free only once it is freed: used includes the files whose
//     deletion is in flight (deleting), and a put that only such deletions keep
//     from fitting waits for them (outside mu), so the files of the tier stay
//     within max on disk as before, not just in the index (up to the writes in
//     progress, as before);
//   - a rewrite of a block gets a new generation, so a file name is never
//     reused and a delayed deletion of an old file cannot remove a newer one;
//   - close, which takes life for writing, waits for the deletions in flight;
//   - a file whose unlink fails (other than not found: EACCES, EPERM, EBUSY, EROFS, EIO) is still on
//     disk, so its bytes stay counted used: it is kept aside (stuck) and its deletion retried when room
//     is wanted (a put that needs room, at most every stuckRetryInterval; every reclaim). Counted free,
//     the tier would write past max on disk, and Reclaim would report room it had not made. A put
//     that only stuck files keep from fitting is skipped (served uncached), not written past max:
//     counted as a disk error (Stats.DiskErrors) and logged once until the stuck files are all gone;
//     the stuck files are counted too (Stats.DiskStuckFiles, DiskStuckBytes), so the status says why
//     blocks stopped being cached on disk. The next start's rebuild indexes the stuck files that are
//     still there (each counted once, as any file found).
const (
	diskMagic    = "RFSB"
	diskVersion  = 2
	diskFlagZstd = 1
	diskHdrLen   = 4 + 1 + 1 + 2 + 8 + 8 + 8 + 4 + 8 + 4
	diskHdrLenV1 = diskHdrLen - 4
	// diskPage is the alignment of O_DIRECT offsets, lengths and buffers: 4 KiB covers every
	// logical block size in use.
	diskPage  = 4096
	tmpPrefix = ".tmp-"
)

// diskFileSize is the size of a cache file holding payloadLen bytes of payload.
func diskFileSize(payloadLen int) int64 { return diskPage + roundPage(int64(payloadLen)) }

func roundPage(n int64) int64 { return (n + diskPage - 1) &^ (diskPage - 1) }

type diskKey struct {
	h   string // hex object hash
	bs  int64
	idx int64
}

type diskEntry struct {
	key  diskKey
	gen  uint64 // names the file (see path)
	size int64  // file bytes
}

// doomed is a file taken out of the index whose deletion is in flight (see deleteFiles).
type doomed struct {
	path string
	size int64
	// stuck says an unlink of the file failed before: it is counted in stuckFiles and stuckTotal
	// until it is gone.
	stuck bool
}

// diskTier is the disk tier, LRU-bounded by bytes of files. Access order is
// tracked in memory; on start it is rebuilt from the files' mtimes (a hit
// touches the file's mtime, best effort), so it survives remounts.
type diskTier struct {
	dir string
	max int64
	log *slog.Logger
	enc *zstd.Encoder // EncodeAll/DecodeAll are safe for concurrent use
	dec *zstd.Decoder

	// life is held for reading by every operation on files and for writing by
	// close: it protects closed, keeps enc/dec open while in use (a closed
	// decoder would make a good file look corrupt, and it would be deleted), and
	// makes close wait for deletions in flight.
	life   sync.RWMutex
	closed bool

	// writers bounds the puts writing at once. A put finding it full waits for a slot: a block
	// skipped here would leave a hole in the disk tier, so a re-read would fetch it again and hash the
	// whole file again (a cold 1 GiB read used to skip 0 to 8 of its 128 blocks). The waiting put's
	// fetch keeps its Parallel slot and its bytes in the fetch budget meanwhile (Cache.fetch), so a
	// slow disk slows the fetches instead of pinning memory no budget counts.
	writers chan struct{}
	// waiting counts puts waiting for a writer slot (for tests: the disk is the bottleneck).
	waiting atomic.Int64
	// waitingRoom counts puts waiting for deletions in flight to free their room (for tests).
	waitingRoom atomic.Int64

	// unlink deletes one cache file: os.Remove, or a test's hook that holds deletions to make them slow.
	unlink func(path string) error
	// beforeRead, when a test sets it, runs in get between the index lookup and the file's read.
	beforeRead func(path string)

	// mu protects index, lru, used, deleting, stuck, stuckBytes, stuckFiles, stuckTotal, retryStuckAt,
	// stuckWarned, stuckSkipWarned, lastGen, failing and the counters below.
	mu    sync.Mutex
	index map[diskKey]*list.Element // value *diskEntry
	lru   *list.List                // front = most recently used
	// used is the bytes of indexed files, of writes in progress and of files being deleted.
	used int64
	// deleting is the bytes of files taken out of the index whose deletion is in flight (part of used).
	deleting int64
	// stuck are the files taken out of the index whose unlink failed (other than not found): still on
	// disk, so stuckBytes are part of used. stuckFiles and stuckTotal count them with those whose
	// deletion is being retried (then out of stuck, counted in deleting): every file whose unlink
	// failed and that is not gone yet. retryStuckAt is when a put may retry them next. stuckWarned
	// says their failure was logged, stuckSkipWarned that a put skipped for the room they hold was
	// (each once until stuckFiles is back to 0).
	stuck           []doomed
	stuckBytes      int64
	stuckFiles      int64
	stuckTotal      int64
	retryStuckAt    time.Time
	stuckWarned     bool
	stuckSkipWarned bool
	// retryStuckEvery spaces a put's retries of stuck files: each retry is an unlink per stuck file,
	// and a put needing room comes with nearly every block once the tier is full.
	retryStuckEvery time.Duration
	// freed (on mu) is broadcast whenever a deletion in flight ends.
	freed   sync.Cond
	lastGen uint64 // the generation of the latest write, or the highest found on disk
	failing bool   // the last write failed (log once per failing streak)
	corrupt int64
	errs    int64
}

// stuckRetryInterval is how often a put needing room retries the deletion of files whose unlink failed.
const stuckRetryInterval = 10 * time.Second

// maxDiskWriters is how many blocks may be written to disk at once: enough to keep a disk busy (O_DIRECT
// writes wait for the device), few enough that encoding buffers stay small. Puts beyond it wait.
const maxDiskWriters = 8

func openDisk(dir string, maxBytes int64, log *slog.Logger) (*diskTier, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// Probe: an unwritable directory is found now, not at the first block.
	f, err := os.CreateTemp(dir, tmpPrefix)
	if err != nil {
		return nil, err
	}
	f.Close()
	os.Remove(f.Name())
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, err
	}
	d := &diskTier{dir: dir, max: maxBytes, log: log, enc: enc, dec: dec,
		index: make(map[diskKey]*list.Element), lru: list.New(), writers: make(chan struct{}, maxDiskWriters),
		unlink: os.Remove, retryStuckEvery: stuckRetryInterval}
	d.freed.L = &d.mu
	d.rebuild()
	return d, nil
}

// rebuild indexes the files left by earlier mounts, least recently used
// (oldest mtime) last, removes temp files and all but one file of a block, and
// evicts down to the budget. Generations go on from the highest found.
func (d *diskTier) rebuild() {
	type found struct {
		key   diskKey
		gen   uint64
		size  int64
		mtime time.Time
	}
	var all []found
	filepath.WalkDir(d.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		name := e.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			os.Remove(path)
			return nil
		}
		k, gen, ok := parseDiskName(name)
		if !ok || filepath.Base(filepath.Dir(path)) != k.h[:2] {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		all = append(all, found{k, gen, info.Size(), info.ModTime()})
		return nil
	})
	slices.SortFunc(all, func(a, b found) int {
		if c := b.mtime.Compare(a.mtime); c != 0 {
			return c
		}
		return cmp.Compare(b.gen, a.gen)
	})
	var dups []doomed
	d.mu.Lock()
	for _, f := range all {
		d.lastGen = max(d.lastGen, f.gen)
		d.used += f.size
		if _, dup := d.index[f.key]; dup {
			// Two files of one block: the process ended between a rewrite and the old file's
			// deletion. Keep the most recently used (the newest when alike) and delete the other
			// (counted used until it is gone, as a file taken out of the index).
			d.deleting += f.size
			dups = append(dups, doomed{path: d.path(f.key, f.gen), size: f.size})
			continue
		}
		d.index[f.key] = d.lru.PushBack(&diskEntry{key: f.key, gen: f.gen, size: f.size})
	}
	victims := d.evictLocked(0, dups)
	d.mu.Unlock()
	d.deleteFiles(victims)
}

func objHash(id string) string {
	s := sha256.Sum256([]byte(id))
	return hex.EncodeToString(s[:16])
}

// path is the file of generation gen of block k; generation 0 is a file named before generations.
func (d *diskTier) path(k diskKey, gen uint64) string {
	name := k.h + "-" + strconv.FormatInt(k.bs, 10) + "-" + strconv.FormatInt(k.idx, 10)
	if gen != 0 {
		name += "-" + strconv.FormatUint(gen, 36)
	}
	return filepath.Join(d.dir, k.h[:2], name)
}

func parseDiskName(name string) (k diskKey, gen uint64, ok bool) {
	parts := strings.Split(name, "-")
	if len(parts) != 3 && len(parts) != 4 || len(parts[0]) != 32 {
		return diskKey{}, 0, false
	}
	if _, err := hex.DecodeString(parts[0]); err != nil {
		return diskKey{}, 0, false
	}
	bs, err1 := strconv.ParseInt(parts[1], 10, 64)
	idx, err2 := strconv.ParseInt(parts[2], 10, 64)
	if err1 != nil || err2 != nil || bs <= 0 || idx < 0 {
		return diskKey{}, 0, false
	}
	if len(parts) == 4 {
		var err error
		if gen, err = strconv.ParseUint(parts[3], 36, 64); err != nil || gen == 0 {
			return diskKey{}, 0, false
		}
	}
	return diskKey{parts[0], bs, idx}, gen, true
}

// has reports whether the block is indexed (without reading or touching it).
func (d *diskTier) has(obj Object, bs, idx int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.index[diskKey{objHash(obj.ID), bs, idx}]
	return ok
}

// get returns the block, or nil if it is absent or fails any check (then the
// file is deleted, so the block is refetched).
func (d *diskTier) get(obj Object, bs, idx, want int64) []byte {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return nil
	}
	k := diskKey{objHash(obj.ID), bs, idx}
	d.mu.Lock()
	e, ok := d.index[k]
	var gen uint64
	if ok {
		d.lru.MoveToFront(e)
		gen = e.Value.(*diskEntry).gen
	}
	d.mu.Unlock()
	if !ok {
		return nil
	}
	p := d.path(k, gen)
	if d.beforeRead != nil {
		d.beforeRead(p)
	}
	data, err := d.read(p, obj, bs, idx, want)
	if errors.Is(err, fs.ErrNotExist) {
		// Removed by hand (a file taken out of the index is deleted only after): just a miss.
		d.mu.Lock()
		if d.indexedLocked(k, e) {
			d.dropLocked(e)
		}
		d.mu.Unlock()
		return nil
	}
	if err != nil {
		d.mu.Lock()
		d.corrupt++
		var victims []doomed
		if d.indexedLocked(k, e) {
			victims = append(victims, d.takeLocked(e))
		}
		d.mu.Unlock()
		d.log.Warn("corrupt disk cache block deleted; refetching", "file", p, "err", err)
		d.deleteFiles(victims)
		return nil
	}
	// Served only if still indexed: a block taken out of the index while it was read (evicted,
	// reclaimed, dropped with its object) is being deleted, and a miss.
	d.mu.Lock()
	ok = d.indexedLocked(k, e)
	d.mu.Unlock()
	if !ok {
		return nil
	}
	now := time.Now()
	os.Chtimes(p, now, now) // best effort: keeps LRU order across remounts
	return data
}

// read reads and checks one cache file: header and payload in one read, straight into the block's
// buffer when the payload is stored raw.
func (d *diskTier) read(p string, obj Object, bs, idx, want int64) ([]byte, error) {
	f, direct, err := openDirect(p, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer func() { f.Close() }()
	hdr := alignedBuf(diskPage)
	body := alignedBuf(int(roundPage(want)))
	n, err := readPages(f, hdr, body)
	if direct && errors.Is(err, syscall.EINVAL) {
		// A filesystem that takes O_DIRECT at open but not for this read: read it buffered rather
		// than call a good file corrupt.
		f.Close()
		if f, err = os.Open(p); err != nil {
			return nil, err
		}
		n, err = readPages(f, hdr, body)
	}
	if err != nil {
		return nil, err
	}
	if n >= 5 && string(hdr[:4]) == diskMagic && hdr[4] == 1 {
		raw, err := os.ReadFile(p) // a file of version 1, before the layout was aligned
		if err != nil {
			return nil, err
		}
		return d.decodeV1(raw, obj, bs, idx, want)
	}
	if n < diskPage {
		return nil, fmt.Errorf("%w: %d bytes", errCorrupt, n)
	}
	return d.decode(hdr, body[:n-diskPage], obj, bs, idx, want)
}

// indexedLocked reports whether e is still the indexed entry of k.
func (d *diskTier) indexedLocked(k diskKey, e *list.Element) bool {
	cur, ok := d.index[k]
	return ok && cur == e
}

// encode returns the file's header page and payload separately, so an incompressible block (the
// common case) is written straight from the block buffer instead of being copied into a new one first.
// ok is false when the id does not fit in the header page.
//
// sum, when not nil, is the CRC-32C of data as its source computed it while the bytes landed.
func (d *diskTier) encode(obj Object, bs, idx int64, data []byte, sum *uint32) (hdr, payload []byte, ok bool) {
	if diskHdrLen+len(obj.ID) > diskPage {
		return nil, nil, false
	}
	var flags byte
	payload = data
	// Only compress what compresses: probe a sample first so incompressible
	// blocks (most simulation binaries) cost almost nothing.
	sample := data[:min(len(data), 64<<10)]
	if len(sample) > 0 {
		if c := d.enc.EncodeAll(sample, nil); len(c) < len(sample)*7/8 {
			if c := d.enc.EncodeAll(data, nil); len(c) < len(data)*15/16 {
				payload, flags = c, diskFlagZstd
			}
		}
	}
	hdr = alignedBuf(diskPage)
	copy(hdr, diskMagic)
	hdr[4] = diskVersion
	hdr[5] = flags
	binary.LittleEndian.PutUint16(hdr[6:], uint16(len(obj.ID)))
	binary.LittleEndian.PutUint64(hdr[8:], uint64(obj.Size))
	binary.LittleEndian.PutUint64(hdr[16:], uint64(bs))
	binary.LittleEndian.PutUint64(hdr[24:], uint64(idx))
	binary.LittleEndian.PutUint32(hdr[32:], uint32(len(data)))
	if sum == nil {
		s := crc32.Checksum(data, castagnoli)
		sum = &s
	}
	binary.LittleEndian.PutUint64(hdr[36:], uint64(*sum))
	binary.LittleEndian.PutUint32(hdr[44:], uint32(len(payload)))
	copy(hdr[diskHdrLen:], obj.ID)
	return hdr, payload, true
}

var errCorrupt = errors.New("corrupt cache block")

// decode checks a version 2 file's header page and returns the block from body (the bytes after the
// header page, as read).
func (d *diskTier) decode(hdr, body []byte, obj Object, bs, idx, want int64) ([]byte, error) {
	if string(hdr[:4]) != diskMagic || hdr[4] != diskVersion {
		return nil, fmt.Errorf("%w: bad header", errCorrupt)
	}
	idLen := int(binary.LittleEndian.Uint16(hdr[6:]))
	if diskHdrLen+idLen > diskPage ||
		string(hdr[diskHdrLen:diskHdrLen+idLen]) != obj.ID ||
		int64(binary.LittleEndian.Uint64(hdr[8:])) != obj.Size ||
		int64(binary.LittleEndian.Uint64(hdr[16:])) != bs ||
		int64(binary.LittleEndian.Uint64(hdr[24:])) != idx ||
		int64(binary.LittleEndian.Uint32(hdr[32:])) != want {
		return nil, fmt.Errorf("%w: key mismatch", errCorrupt)
	}
	sum := binary.LittleEndian.Uint64(hdr[36:])
	plen := int(binary.LittleEndian.Uint32(hdr[44:]))
	if plen > len(body) {
		return nil, fmt.Errorf("%w: payload of %d bytes, file has %d", errCorrupt, plen, len(body))
	}
	return d.payload(diskVersion, hdr[5], body[:plen], want, sum)
}

// castagnoli is the CRC-32C table: the checksum of version 2 blocks, computed with the CPU's crc32
// instruction at about 28 GB/s here (xxhash64, version 1's, ran at 13).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func blockSum(data []byte, version byte) uint64 {
	if version == 1 {
		return xxhash.Sum64(data)
	}
	return uint64(crc32.Checksum(data, castagnoli))
}

// payload decompresses (flags) and checks one block's payload against its checksum (of version).
func (d *diskTier) payload(version, flags byte, payload []byte, want int64, sum uint64) ([]byte, error) {
	var data []byte
	switch flags {
	case 0:
		data = payload
	case diskFlagZstd:
		var err error
		data, err = d.dec.DecodeAll(payload, make([]byte, 0, want))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("%w: unknown flags %#x", errCorrupt, flags)
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("%w: length %d, want %d", errCorrupt, len(data), want)
	}
	if blockSum(data, version) != sum {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	// A raw block is a sub-slice of the buffer read: nobody appends to it (capacity capped).
	return data[:len(data):len(data)], nil
}

// decodeV1 reads a file of version 1: the header (without a payload length) then the payload, unaligned.
func (d *diskTier) decodeV1(raw []byte, obj Object, bs, idx, want int64) ([]byte, error) {
	if len(raw) < diskHdrLenV1 || string(raw[:4]) != diskMagic || raw[4] != 1 {
		return nil, fmt.Errorf("%w: bad header", errCorrupt)
	}
	idLen := int(binary.LittleEndian.Uint16(raw[6:]))
	if len(raw) < diskHdrLenV1+idLen ||
		string(raw[diskHdrLenV1:diskHdrLenV1+idLen]) != obj.ID ||
		int64(binary.LittleEndian.Uint64(raw[8:])) != obj.Size ||
		int64(binary.LittleEndian.Uint64(raw[16:])) != bs ||
		int64(binary.LittleEndian.Uint64(raw[24:])) != idx ||
		int64(binary.LittleEndian.Uint32(raw[32:])) != want {
		return nil, fmt.Errorf("%w: key mismatch", errCorrupt)
	}
	return d.payload(1, raw[5], raw[diskHdrLenV1+idLen:], want, binary.LittleEndian.Uint64(raw[36:]))
}

// put stores a block. Failures (disk full, directory gone or unwritable) are
// logged once per failing streak and otherwise ignored: reads go on uncached.
func (d *diskTier) put(obj Object, bs, idx int64, data []byte, sum *uint32) {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return
	}
	select {
	case d.writers <- struct{}{}:
	default:
		d.waiting.Add(1)
		d.writers <- struct{}{}
		d.waiting.Add(-1)
	}
	defer func() { <-d.writers }()
	k := diskKey{objHash(obj.ID), bs, idx}
	hdr, payload, ok := d.encode(obj, bs, idx, data, sum)
	if !ok {
		return
	}
	size := diskFileSize(len(payload))
	d.mu.Lock()
	if size > d.max {
		d.mu.Unlock()
		return
	}
	retried := false // the stuck files, once per put at most
	for {
		if e, ok := d.index[k]; ok { // already stored (a concurrent put of the same block)
			d.lru.MoveToFront(e)
			d.mu.Unlock()
			return
		}
		var victims []doomed
		if !retried && d.used-d.deleting+size > d.max {
			retried = true
			victims = d.takeStuckLocked(false)
		}
		if victims := d.evictLocked(size, victims); len(victims) > 0 {
			d.mu.Unlock()
			d.deleteFiles(victims)
			d.mu.Lock()
			continue // meanwhile others may have taken the room, or stored this block
		}
		if d.used+size > d.max && d.deleting > 0 {
			// The room is promised by deletions in flight (others'): count it only once it is free.
			d.waitingRoom.Add(1)
			d.freed.Wait()
			d.waitingRoom.Add(-1)
			continue
		}
		if d.used+size > d.max && d.stuckBytes > 0 {
			// Nothing left to evict, and files the tier cannot delete hold the room: written, the
			// block would take the tier past max on disk, with nothing to trim it by. The block is
			// served uncached like one whose write failed, so it counts as a disk error: without it
			// the status could not say why blocks stopped being cached on disk.
			d.errs++
			warn := !d.stuckSkipWarned
			d.stuckSkipWarned = true
			files, total := d.stuckFiles, d.stuckTotal
			d.mu.Unlock()
			if warn {
				d.log.Warn("disk cache full of files it cannot delete; blocks are served uncached until their deletion works",
					"dir", d.dir, "files", files, "bytes", total)
			}
			return
		}
		break // fits, or the rest of used is writes in progress (the last eviction below trims)
	}
	d.used += size // reserved while writing
	d.lastGen++
	gen := d.lastGen
	d.mu.Unlock()

	err := d.write(k, gen, hdr, payload)

	d.mu.Lock()
	if err != nil {
		d.used -= size
		d.errs++
		if !d.failing {
			d.log.Warn("disk cache write failed; serving uncached", "dir", d.dir, "err", err)
		}
		d.failing = true
		d.mu.Unlock()
		return
	}
	if d.failing {
		d.log.Info("disk cache writes work again", "dir", d.dir)
	}
	d.failing = false
	var victims []doomed
	if e, ok := d.index[k]; ok { // a concurrent put of the same block won the race: ours is newer
		victims = append(victims, d.takeLocked(e))
	}
	d.index[k] = d.lru.PushFront(&diskEntry{key: k, gen: gen, size: size})
	victims = d.evictLocked(0, victims)
	d.mu.Unlock()
	d.deleteFiles(victims)
}

func (d *diskTier) write(k diskKey, gen uint64, hdr, payload []byte) error {
	sub := filepath.Join(d.dir, k.h[:2])
	if err := os.MkdirAll(sub, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(sub, tmpPrefix+strconv.FormatUint(rand.Uint64(), 36))
	f, direct, err := openDirect(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = writePages(f, hdr, payload)
	if direct && errors.Is(err, syscall.EINVAL) {
		// O_DIRECT taken at open but not for this write: write the same file buffered.
		f.Close()
		if f, err = os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0o600); err != nil {
			os.Remove(tmp)
			return err
		}
		err = writePages(f, hdr, payload)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, d.path(k, gen))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// evictLocked takes least recently used files out of the index until need more bytes will fit once
// the deletions in flight are done, and returns them appended to victims: the caller deletes them with
// deleteFiles once mu is unlocked.
func (d *diskTier) evictLocked(need int64, victims []doomed) []doomed {
	for d.used-d.deleting+need > d.max && d.lru.Len() > 0 {
		victims = append(victims, d.takeLocked(d.lru.Back()))
	}
	return victims
}

// takeLocked takes entry e out of the index (from now on its block is a miss) and counts its file as
// being deleted; the caller deletes it with deleteFiles once mu is unlocked, holding life for reading
// from before this call (close waits for it).
func (d *diskTier) takeLocked(e *list.Element) doomed {
	de := e.Value.(*diskEntry)
	d.lru.Remove(e)
	delete(d.index, de.key)
	d.deleting += de.size
	return doomed{path: d.path(de.key, de.gen), size: de.size}
}

// dropLocked takes entry e, whose file is already gone, out of the index and counts its bytes free.
func (d *diskTier) dropLocked(e *list.Element) {
	de := e.Value.(*diskEntry)
	d.lru.Remove(e)
	delete(d.index, de.key)
	d.used -= de.size
}

// deleteFiles deletes files taken out of the index (takeLocked, takeStuckLocked), mu not held, counts
// each one's bytes free once it is gone (or was already: not found), and returns the bytes freed. A
// file whose unlink fails otherwise is still on disk: its bytes stay used and it joins the stuck files,
// to be deleted again when room is wanted.
func (d *diskTier) deleteFiles(victims []doomed) (freed int64) {
	var warn error
	for _, v := range victims {
		err := d.unlink(v.path)
		d.mu.Lock()
		d.deleting -= v.size
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			d.used -= v.size
			freed += v.size
			if v.stuck {
				d.stuckFiles--
				d.stuckTotal -= v.size
			}
			if d.stuckFiles == 0 {
				d.stuckWarned, d.stuckSkipWarned = false, false
			}
		} else {
			if !v.stuck {
				v.stuck = true
				d.stuckFiles++
				d.stuckTotal += v.size
			}
			d.stuck = append(d.stuck, v)
			d.stuckBytes += v.size
			if !d.stuckWarned && warn == nil {
				d.stuckWarned, warn = true, err
			}
		}
		d.mu.Unlock()
		d.freed.Broadcast()
	}
	if warn != nil {
		d.log.Warn("disk cache cannot delete a file; its room stays used, deletion retried later", "dir", d.dir, "err", warn)
	}
	return freed
}

// takeStuckLocked takes the stuck files back for deletion (counted as being deleted again, as
// takeLocked counts a file): always with force (Reclaim), else only when retryStuckAt has passed. The
// caller deletes them with deleteFiles once mu is unlocked, holding life for reading.
func (d *diskTier) takeStuckLocked(force bool) []doomed {
	if len(d.stuck) == 0 || !force && time.Now().Before(d.retryStuckAt) {
		return nil
	}
	victims := d.stuck
	d.stuck = nil
	d.deleting += d.stuckBytes
	d.stuckBytes = 0
	d.retryStuckAt = time.Now().Add(d.retryStuckEvery)
	return victims
}

// remove removes one block.
func (d *diskTier) remove(obj Object, bs, idx int64) {
	d.life.RLock()
	defer d.life.RUnlock()
	k := diskKey{objHash(obj.ID), bs, idx}
	var victims []doomed
	d.mu.Lock()
	if e, ok := d.index[k]; ok {
		victims = append(victims, d.takeLocked(e))
	}
	d.mu.Unlock()
	d.deleteFiles(victims)
}

// verifiedPath is the marker saying an object's whole-file sha512 matched. Its name does not parse as
// a block's, so the LRU index ignores it; it is tiny and removed with the object's blocks by dropObject.
func (d *diskTier) verifiedPath(h string) string {
	return filepath.Join(d.dir, h[:2], h+"-verified")
}

func verifiedContent(obj Object, sha string) string {
	return strconv.FormatInt(obj.Size, 10) + " " + strings.ToLower(sha) + "\n"
}

// markVerified records that obj's blocks, as the disk tier holds them, hashed to sha512 sha. Best
// effort: without the marker the next reader hashes the file again.
func (d *diskTier) markVerified(obj Object, sha string) {
	d.life.RLock()
	defer d.life.RUnlock()
	if d.closed {
		return
	}
	h := objHash(obj.ID)
	sub := filepath.Join(d.dir, h[:2])
	if os.MkdirAll(sub, 0o700) != nil {
		return
	}
	f, err := os.CreateTemp(sub, tmpPrefix)
	if err != nil {
		return
	}
	_, err = f.WriteString(verifiedContent(obj, sha))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), d.verifiedPath(h))
	}
	if err != nil {
		os.Remove(f.Name())
	}
}

// verified reports whether every block of obj (of block size bs) is on disk and the object was
// verified against sha512 sha: then its blocks, each checked against its own checksum when read, need
// no whole-file hashing again.
func (d *diskTier) verified(obj Object, bs int64, sha string) bool {
	h := objHash(obj.ID)
	d.mu.Lock()
	for idx := range ceilDiv(obj.Size, bs) {
		if _, ok := d.index[diskKey{h, bs, idx}]; !ok {
			d.mu.Unlock()
			return false
		}
	}
	d.mu.Unlock()
	b, err := os.ReadFile(d.verifiedPath(h))
	return err == nil && string(b) == verifiedContent(obj, sha)
}

// dropObject removes every block of objectID, whatever the block size.
func (d *diskTier) dropObject(objectID string) {
	d.life.RLock()
	defer d.life.RUnlock()
	h := objHash(objectID)
	var victims []doomed
	d.mu.Lock()
	for k, e := range d.index {
		if k.h == h {
			victims = append(victims, d.takeLocked(e))
		}
	}
	d.mu.Unlock()
	os.Remove(d.verifiedPath(h))
	d.deleteFiles(victims)
}

func (d *diskTier) stats() (used, blocks, corrupt, errs int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.used, int64(d.lru.Len()), d.corrupt, d.errs
}

// stuckStats returns the files the tier failed to delete and their bytes (part of used), counting
// those whose deletion is being retried: a retry in flight does not make them vanish from the status.
func (d *diskTier) stuckStats() (files, bytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stuckFiles, d.stuckTotal
}

func (d *diskTier) close() {
	d.life.Lock()
	defer d.life.Unlock()
	d.closed = true
	d.enc.Close()
	d.dec.Close()
}
