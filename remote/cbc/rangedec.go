package cbc

import (
	"crypto/cipher"
	"errors"
	"fmt"
)

// RangeDecrypter decrypts, as it arrives, the ciphertext that CipherRange(off, n, plainSize) names, so a
// ranged read needs neither the whole ciphertext in memory nor a second buffer for the plaintext: each
// piece of ciphertext is decrypted in place and the wanted plaintext handed on. Ciphertext may arrive in
// pieces of any length (a body read in chunks, or cut and resumed: the state carries over). Like
// DecryptRange, the padding is checked when the range reaches the file's last block.
// A RangeDecrypter is not safe for concurrent use.
type RangeDecrypter struct {
	block     cipher.Block
	mode      cipher.BlockMode // nil until the IV is known
	plainSize int64
	off, end  int64 // the plaintext wanted
	next      int64 // plaintext offset of the next block to decrypt
	cend      int64 // ciphertext end of the range
	needIV    bool  // the range starts in block 0: the file IV comes from SetIV
	carry     [BlockSize]byte
	nc        int // bytes in carry
}

// ErrNoIV is returned by Write when the range starts in block 0 and SetIV was not called.
var ErrNoIV = errors.New("cbc: the file IV is needed for a range in block 0")

// NewRangeDecrypter prepares the decryption of plaintext [off, off+n) of a file of plainSize bytes. The
// ciphertext to feed it is CipherRange(off, n, plainSize), in order.
func NewRangeDecrypter(key []byte, plainSize, off, n int64) (*RangeDecrypter, error) {
	block, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	cstart, cend := CipherRange(off, n, plainSize)
	if cstart == cend {
		return nil, fmt.Errorf("cbc: empty range [%d,%d) of %d bytes", off, off+n, plainSize)
	}
	first := off / BlockSize
	return &RangeDecrypter{block: block, plainSize: plainSize, off: off, end: min(off+n, plainSize),
		next: first * BlockSize, cend: cend, needIV: first == 0}, nil
}

// NeedsIV reports whether the range starts in block 0, whose IV is the file's (SetIV).
func (d *RangeDecrypter) NeedsIV() bool { return d.needIV }

// SetIV gives the file IV, for a range starting in block 0.
func (d *RangeDecrypter) SetIV(iv []byte) error {
	if len(iv) != BlockSize {
		return fmt.Errorf("cbc: IV is %d bytes, want %d", len(iv), BlockSize)
	}
	if d.needIV && d.mode == nil {
		d.mode = cipher.NewCBCDecrypter(d.block, iv)
	}
	return nil
}

// Write decrypts ct (the next ciphertext bytes of the range) in place and calls emit with the wanted
// plaintext it yields, in order; emit must copy what it keeps. ct's contents are destroyed.
func (d *RangeDecrypter) Write(ct []byte, emit func(plain []byte)) error {
	if d.mode == nil && !d.needIV {
		// The block before the range is its IV.
		k := copy(d.carry[d.nc:], ct)
		d.nc += k
		ct = ct[k:]
		if d.nc < BlockSize {
			return nil
		}
		d.mode = cipher.NewCBCDecrypter(d.block, d.carry[:])
		d.nc = 0
	}
	if d.mode == nil {
		if len(ct) == 0 {
			return nil
		}
		return ErrNoIV
	}
	if d.nc > 0 {
		// Complete the block a previous piece began.
		k := copy(d.carry[d.nc:], ct)
		d.nc += k
		ct = ct[k:]
		if d.nc < BlockSize {
			return nil
		}
		d.nc = 0
		if err := d.decrypt(d.carry[:], emit); err != nil {
			return err
		}
	}
	whole := len(ct) &^ (BlockSize - 1)
	if whole > 0 {
		if err := d.decrypt(ct[:whole], emit); err != nil {
			return err
		}
	}
	d.nc = copy(d.carry[:], ct[whole:])
	return nil
}

// decrypt decrypts whole blocks in place, checks the padding if they end the file, and emits the wanted part.
func (d *RangeDecrypter) decrypt(b []byte, emit func([]byte)) error {
	if d.next+int64(len(b)) > d.cend {
		return fmt.Errorf("cbc: more ciphertext than the range [%d,%d) needs", d.off, d.end)
	}
	d.mode.CryptBlocks(b, b)
	base := d.next
	d.next += int64(len(b))
	if pad := BlockSize - d.plainSize%BlockSize; pad < BlockSize && d.next == d.plainSize+pad {
		for _, c := range b[len(b)-int(pad):] {
			if int64(c) != pad {
				return ErrPadding
			}
		}
	}
	lo, hi := max(d.off, base), min(d.end, d.next)
	if lo < hi {
		emit(b[lo-base : hi-base])
	}
	return nil
}

// Done reports whether the whole range has been decrypted.
func (d *RangeDecrypter) Done() bool { return d.next >= d.cend && d.nc == 0 }
