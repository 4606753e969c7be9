// Package sha512x is SHA-512 (FIPS 180-4) with a faster block function on amd64 CPUs with AVX-512VL
// and BMI2, for the whole-file sha512s of the read path (cache) and of uploads. On a cold read of a
// large file the mount spent more than half its CPU in crypto/sha512's AVX2 block function.
//
// New returns crypto/sha512's hash where the assembly cannot run: on other architectures, on CPUs
// without the features, and when built with -tags purego. Its digests do not implement
// encoding.BinaryMarshaler (no caller saves hash state); crypto/sha512's do.
package sha512x

import (
	"crypto/sha512"
	"encoding/binary"
	"hash"
)

// Size is the size of a SHA-512 checksum in bytes; BlockSize its block size.
const (
	Size      = sha512.Size
	BlockSize = sha512.BlockSize
)

// New returns a SHA-512 hash.Hash, the package's own on a CPU that runs its assembly, else
// crypto/sha512's.
func New() hash.Hash {
	if !useAsm {
		return sha512.New()
	}
	d := new(digest)
	d.Reset()
	return d
}

// The initial hash value H(0) of SHA-512 (FIPS 180-4, 5.3.5).
var initial = [8]uint64{
	0x6a09e667f3bcc908, 0xbb67ae8584caa73b, 0x3c6ef372fe94f82b, 0xa54ff53a5f1d36f1,
	0x510e527fade682d1, 0x9b05688c2b3e6c1f, 0x1f83d9abfb41bd6b, 0x5be0cd19137e2179,
}

var _ hash.Hash = (*digest)(nil)

// digest is the state of one hash: h over the first len-nx bytes written, the last nx of them
// buffered in x because they do not fill a block yet.
type digest struct {
	h   [8]uint64
	x   [BlockSize]byte
	nx  int
	len uint64
}

func (d *digest) Reset() {
	d.h = initial
	d.nx = 0
	d.len = 0
}

func (d *digest) Size() int      { return Size }
func (d *digest) BlockSize() int { return BlockSize }

func (d *digest) Write(p []byte) (int, error) {
	n := len(p)
	d.len += uint64(n)
	if d.nx > 0 {
		c := copy(d.x[d.nx:], p)
		d.nx += c
		p = p[c:]
		if d.nx < BlockSize {
			return n, nil
		}
		block(&d.h, d.x[:])
		d.nx = 0
	}
	if whole := len(p) &^ (BlockSize - 1); whole > 0 {
		block(&d.h, p[:whole])
		p = p[whole:]
	}
	d.nx = copy(d.x[:], p)
	return n, nil
}

// Sum appends the checksum of what was written to b; it does not change d.
func (d *digest) Sum(b []byte) []byte {
	c := *d
	sum := c.checkSum()
	return append(b, sum[:]...)
}

// checkSum pads the message (FIPS 180-4, 5.1.2): a 1 bit, zeros up to 112 bytes mod 128, then the
// length in bits as a 128-bit big-endian number.
func (d *digest) checkSum() [Size]byte {
	bits := d.len << 3
	var pad [2 * BlockSize]byte
	pad[0] = 0x80
	n := BlockSize - d.nx // bytes to the end of the buffered block
	if n < 1+16 {
		n += BlockSize
	}
	binary.BigEndian.PutUint64(pad[n-16:], d.len>>61)
	binary.BigEndian.PutUint64(pad[n-8:], bits)
	d.Write(pad[:n])
	if d.nx != 0 {
		panic("sha512x: padding did not end on a block")
	}
	var sum [Size]byte
	for i, v := range d.h {
		binary.BigEndian.PutUint64(sum[8*i:], v)
	}
	return sum
}
