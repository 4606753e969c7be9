package cbc

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
)

// RangeDecrypter decrypts plaintext [off, off+n) of a file in place, into destination buffers, from the
// ciphertext CipherRange(off, n, plainSize) names as it arrives: the reader of the body asks Next where
// the next ciphertext bytes go, reads them there, and reports them with Advance. Whole AES blocks that
// lie inside the range and inside one buffer get their ciphertext straight into the buffer and are
// decrypted where they lie (CBC decrypts in place, carrying the last ciphertext block as the next IV),
// so the plaintext is never copied. The rest (the block before the range, which is its IV; a block cut
// by the range's start or end, or by the border between two buffers; the padded last block of the file)
// goes through a one-block stash and only its wanted part is copied out. Ciphertext may arrive in
// pieces of any length, and a body that breaks can be resumed: the state carries over. Like
// DecryptRange, the padding is checked when the range reaches the file's last block.
// A RangeDecrypter is not safe for concurrent use.
type RangeDecrypter struct {
	block     cipher.Block    // crypto/aes's cipher, when not aesni
	aesni     bool            // decrypt with decryptAESNI and dk, not with block (useAESNI)
	dk        decKeys         // the round keys for decryptAESNI
	haveIV    bool            // iv is set
	iv        [BlockSize]byte // the CBC chain: the ciphertext block before the next one to decrypt
	plainSize int64
	off, end  int64    // the plaintext wanted: destination byte i is plaintext off+i
	first     int64    // plaintext offset of the first block decrypted
	cend      int64    // ciphertext end of the range
	dst       [][]byte // the destination, filled in order
	needIV    bool     // the range starts in block 0: the file IV comes from SetIV

	c   int64 // object offset of the next ciphertext byte to arrive
	dec int64 // object offset up to which the ciphertext that arrived is decrypted (or stashed)

	// The buffer holding destination byte bpos (the cursor moves forward only).
	bi   int
	bpos int64 // destination offset of dst[bi][0]

	// Where the last Next pointed: the stash, or a run of whole blocks in dst[bi] ending at runEnd.
	stashed bool
	runEnd  int64
	stash   [BlockSize]byte
	ns      int // bytes in stash

	onPlain func(buf int, p []byte) // see OnPlain; nil: none
}

// OnPlain makes the decrypter call f with every piece of plaintext as it becomes final in the
// destination, in order: p is part of dst[buf], right after the previous piece of that buffer. A caller
// can checksum the bytes there while they are in the CPU's cache, instead of reading them back later.
func (d *RangeDecrypter) OnPlain(f func(buf int, p []byte)) { d.onPlain = f }

// ErrNoIV is returned by Advance when the range starts in block 0 and SetIV was not called.
var ErrNoIV = errors.New("cbc: the file IV is needed for a range in block 0")

// NewRangeDecrypter prepares the decryption of plaintext [off, off+n) of a file of plainSize bytes into
// dst, whose lengths add up to n; off+n must not pass plainSize. The ciphertext to feed it is
// CipherRange(off, n, plainSize), in order.
func NewRangeDecrypter(key []byte, plainSize, off int64, dst [][]byte) (*RangeDecrypter, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	var n int64
	for _, b := range dst {
		n += int64(len(b))
	}
	if off < 0 || n <= 0 || off+n > plainSize {
		return nil, fmt.Errorf("cbc: range [%d,%d) of %d bytes: empty or outside the file", off, off+n, plainSize)
	}
	cstart, cend := CipherRange(off, n, plainSize)
	first := off / BlockSize * BlockSize
	d := &RangeDecrypter{plainSize: plainSize, off: off, end: off + n, first: first,
		cend: cend, dst: dst, needIV: first == 0, c: cstart, dec: cstart}
	// One key schedule or the other: with AES-NI, crypto/aes's cipher (and its allocation) is not needed.
	var err error
	if useAESNI {
		err = d.dk.init(key)
		d.aesni = true
	} else {
		d.block, err = aes.NewCipher(key)
	}
	if err != nil {
		return nil, err
	}
	return d, nil
}

// NeedsIV reports whether the range starts in block 0, whose IV is the file's (SetIV).
func (d *RangeDecrypter) NeedsIV() bool { return d.needIV }

// SetIV gives the file IV, for a range starting in block 0.
func (d *RangeDecrypter) SetIV(iv []byte) error {
	if len(iv) != BlockSize {
		return fmt.Errorf("cbc: IV is %d bytes, want %d", len(iv), BlockSize)
	}
	if d.needIV && !d.haveIV {
		copy(d.iv[:], iv)
		d.haveIV = true
	}
	return nil
}

// Remaining is how many ciphertext bytes the range still needs.
func (d *RangeDecrypter) Remaining() int64 { return d.cend - d.c }

// Done reports whether the whole range has arrived and is decrypted into the destination.
func (d *RangeDecrypter) Done() bool { return d.c == d.cend && d.dec == d.cend }

// Next returns where the next ciphertext bytes go: a part of a destination buffer or of the stash, at
// most Remaining() bytes long, empty when the range is complete. Fill a prefix of it and call Advance.
func (d *RangeDecrypter) Next() []byte {
	if d.c >= d.cend {
		return nil
	}
	blk := d.c &^ (BlockSize - 1)
	if d.ns > 0 || blk < d.first {
		// Inside a stashed block, or the block before the range (its IV).
		d.stashed = true
		return d.stash[d.ns:]
	}
	if d.c < d.runEnd {
		d.stashed = false
		return d.run()
	}
	// At the start of a block: it goes to the destination if it is whole in the range and in one buffer
	// (the last buffer ends where the range does).
	d.stashed = true
	if blk < d.off {
		return d.stash[:]
	}
	b := d.buffer(blk - d.off)
	bufEnd := d.off + d.bpos + int64(len(b))
	if blk+BlockSize > bufEnd {
		return d.stash[:]
	}
	d.stashed = false
	d.runEnd = bufEnd &^ (BlockSize - 1)
	return d.run()
}

// run is the rest of the current run of whole blocks in dst[bi], from d.c on.
func (d *RangeDecrypter) run() []byte {
	b := d.dst[d.bi]
	return b[d.c-d.off-d.bpos : d.runEnd-d.off-d.bpos]
}

// buffer moves the cursor to the buffer that holds destination byte i and returns it.
func (d *RangeDecrypter) buffer(i int64) []byte {
	for i >= d.bpos+int64(len(d.dst[d.bi])) {
		d.bpos += int64(len(d.dst[d.bi]))
		d.bi++
	}
	return d.dst[d.bi]
}

// Advance reports that k bytes were written at the start of what Next returned. The ciphertext blocks
// they complete are decrypted, in place or out of the stash into the destination.
func (d *RangeDecrypter) Advance(k int) error {
	if k < 0 || int64(k) > d.cend-d.c {
		return fmt.Errorf("cbc: advance by %d with %d bytes to go", k, d.cend-d.c)
	}
	if k == 0 {
		return nil
	}
	if d.stashed {
		if d.ns+k > BlockSize {
			return fmt.Errorf("cbc: advance by %d past the stash", k)
		}
		d.ns += k
		d.c += int64(k)
		if d.ns < BlockSize {
			return nil
		}
		d.ns = 0
		return d.stashDone()
	}
	if d.c+int64(k) > d.runEnd {
		return fmt.Errorf("cbc: advance by %d past the run", k)
	}
	d.c += int64(k)
	whole := d.c &^ (BlockSize - 1)
	if whole == d.dec {
		return nil
	}
	if !d.haveIV {
		return ErrNoIV
	}
	plain := d.dst[d.bi][d.dec-d.off-d.bpos : whole-d.off-d.bpos]
	d.decrypt(plain)
	d.dec = whole
	if d.onPlain != nil {
		d.onPlain(d.bi, plain)
	}
	return nil
}

// stashDone handles a complete stashed block: the IV of the range, or a block to decrypt whose wanted
// part is copied into the destination.
func (d *RangeDecrypter) stashDone() error {
	blk := d.c - BlockSize
	d.dec = d.c
	if blk < d.first {
		d.iv = d.stash
		d.haveIV = true
		return nil
	}
	if !d.haveIV {
		return ErrNoIV
	}
	d.decrypt(d.stash[:])
	if pad := BlockSize - d.plainSize%BlockSize; pad < BlockSize && d.c == d.plainSize+pad {
		// The file's last block, whose tail is padding; a mismatch means a wrong key or wrong data.
		for _, c := range d.stash[BlockSize-pad:] {
			if int64(c) != pad {
				return ErrPadding
			}
		}
	}
	lo, hi := max(d.off, blk), min(d.end, d.c)
	i := lo - d.off // destination offset of p[0]
	for p := d.stash[lo-blk : hi-blk]; len(p) > 0; {
		b := d.buffer(i)
		k := copy(b[i-d.bpos:], p)
		if d.onPlain != nil {
			d.onPlain(d.bi, b[i-d.bpos:i-d.bpos+int64(k)])
		}
		p = p[k:]
		i += int64(k)
	}
	return nil
}

// decrypt CBC-decrypts whole blocks in place, chained from d.iv, and leaves their last ciphertext block
// in d.iv: with AES-NI 8 blocks at a time (16 with VAES) when the CPU has it, else with crypto/aes.
func (d *RangeDecrypter) decrypt(b []byte) {
	if d.aesni {
		decryptAESNI(&d.dk, &d.iv, b)
		return
	}
	decryptGeneric(d.block, &d.iv, b)
}

// decryptGeneric is decrypt with any cipher.Block. It is crypto/cipher's CBC decrypter without its
// per-block call of subtle.XORBytes: going backwards, each block's chain value is the ciphertext block
// before it, still intact.
func decryptGeneric(block cipher.Block, iv *[BlockSize]byte, b []byte) {
	if len(b) < BlockSize {
		return
	}
	next := [BlockSize]byte(b[len(b)-BlockSize:])
	for i := len(b) - BlockSize; i >= 0; i -= BlockSize {
		blk := b[i : i+BlockSize : i+BlockSize]
		prev := iv[:]
		if i > 0 {
			prev = b[i-BlockSize : i]
		}
		block.Decrypt(blk, blk)
		binary.LittleEndian.PutUint64(blk, binary.LittleEndian.Uint64(blk)^binary.LittleEndian.Uint64(prev))
		binary.LittleEndian.PutUint64(blk[8:], binary.LittleEndian.Uint64(blk[8:])^binary.LittleEndian.Uint64(prev[8:]))
	}
	*iv = next
}
