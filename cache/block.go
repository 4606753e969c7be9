package cache

import "strconv"

// blockKey names block idx of one immutable object for this Cache's block
// size. It never changes meaning: objects are immutable, so a block once
// fetched is valid forever (until Drop, which bumps the memory generation).
type blockKey struct {
	id  string
	idx int64
}

// heldBlock is a block a reader keeps a reference to (see heldPair), so the many small kernel reads
// inside one block never go back to the tiers.
type heldBlock struct {
	idx  int64
	data []byte
}

// heldPair is the two blocks a Reader read last ([0] the last one, [1] the one before), kept so that
// reads within them never go back to the tiers. The one before matters when reads do not line up with
// blocks: cp and cat read 256 KiB (st_blksize), so the kernel's read-ahead requests of 1 MiB start
// 512 KiB into a block, and one of every eight spans two blocks. The kernel sends a handle's reads
// concurrently, so such a read can come after the next one has moved the Reader on to the next block;
// with only that block held it went back to the tiers, where the memory tier had often declined the
// block (ristretto's admission) and the disk tier loaded it a second time: a re-read from disk loaded
// 12 to 30% of the blocks twice.
type heldPair [2]*heldBlock

// find returns the held block idx, or nil.
func (h heldPair) find(idx int64) *heldBlock {
	for _, b := range h {
		if b != nil && b.idx == idx {
			return b
		}
	}
	return nil
}

// after returns the pair once a read has brought blocks (in order; at least one): the read's last
// block, and the one before it, from the read or else the last one held before, if that is another.
// The blocks are copied: &read[i] would pin every block of the read.
func (h heldPair) after(read []heldBlock) heldPair {
	last := read[len(read)-1]
	next := heldPair{&last, h[0]}
	if len(read) > 1 {
		before := read[len(read)-2]
		next[1] = &before
	}
	if next[1] != nil && next[1].idx == last.idx {
		next[1] = h[1]
	}
	return next
}

// readyBlock is an unconsumed read-ahead block (see Cache.ready).
type readyBlock struct {
	key   blockKey
	data  []byte
	owner *Reader // whose read-ahead it is (nil: Prefetch's)
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

// numBlocks is the number of blocks of an object of size bytes.
func (c *Cache) numBlocks(size int64) int64 { return ceilDiv(size, c.bs) }

// blockLen is the length of block idx of obj (the last one may be short).
func (c *Cache) blockLen(obj Object, idx int64) int64 {
	return min(c.bs, obj.Size-idx*c.bs)
}

// memKey is the memory tier's key: object, size, block size, Drop generation
// and index. The generation makes a dropped object's blocks unreachable.
func (c *Cache) memKey(obj Object, gen uint64, idx int64) string {
	b := make([]byte, 0, len(obj.ID)+48)
	b = append(b, obj.ID...)
	b = append(b, 0)
	b = strconv.AppendInt(b, obj.Size, 36)
	b = append(b, ':')
	b = strconv.AppendInt(b, c.bs, 36)
	b = append(b, ':')
	b = strconv.AppendUint(b, gen, 36)
	b = append(b, ':')
	b = strconv.AppendInt(b, idx, 36)
	return string(b)
}
