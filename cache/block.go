package cache

import "strconv"

// blockKey names block idx of one immutable object for this Cache's block
// size. It never changes meaning: objects are immutable, so a block once
// fetched is valid forever (until Drop, which bumps the memory generation).
type blockKey struct {
	id  string
	idx int64
}

// heldBlock is a block a reader keeps a reference to (its current block), so
// the many small kernel reads inside one block never go back to the tiers.
type heldBlock struct {
	idx  int64
	data []byte
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
