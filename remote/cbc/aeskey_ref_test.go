package cbc

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// The AES key schedule in Go, written from FIPS-197 (section 5.2 and, for decryption, 5.3.5): the
// reference the tests check the assembly of aeskey_amd64.s against. It looks tables up at addresses
// given by key bytes, so it is not constant-time and the package itself does not use it (aeskey.go).

// sbox is the AES S-box (FIPS-197 5.1.1), computed rather than typed in: the multiplicative inverse in
// GF(2^8), then the affine transformation.
var sbox = func() (s [256]byte) {
	for x := range 256 {
		b := gfInverse(byte(x))
		s[x] = b ^ rotl8(b, 1) ^ rotl8(b, 2) ^ rotl8(b, 3) ^ rotl8(b, 4) ^ 0x63
	}
	return s
}()

// invMixTable[x] is the column InvMixColumns makes of (x, 0, 0, 0), most significant byte first: x times
// 0e, 09, 0d, 0b (FIPS-197 5.3.3). A byte in row r gives the same column rotated down by r.
var invMixTable = func() (t [256]uint32) {
	for x := range 256 {
		b := byte(x)
		t[x] = uint32(gfMul(b, 0x0e))<<24 | uint32(gfMul(b, 0x09))<<16 | uint32(gfMul(b, 0x0d))<<8 | uint32(gfMul(b, 0x0b))
	}
	return t
}()

func rotl8(b byte, n uint) byte { return b<<n | b>>(8-n) }

// gfMul multiplies in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (FIPS-197 4.2).
func gfMul(a, b byte) byte {
	var p byte
	for ; b != 0; b >>= 1 {
		if b&1 != 0 {
			p ^= a
		}
		a = xtime(a)
	}
	return p
}

// xtime multiplies by x (FIPS-197 4.2.1).
func xtime(a byte) byte {
	if a&0x80 != 0 {
		return a<<1 ^ 0x1b
	}
	return a << 1
}

// gfInverse is a^254, the inverse of a in GF(2^8) (a^255 = 1), with 0 mapped to 0 as FIPS-197 says.
func gfInverse(a byte) byte {
	r := byte(1)
	for e, p := 254, a; e != 0; e >>= 1 {
		if e&1 != 0 {
			r = gfMul(r, p)
		}
		p = gfMul(p, p)
	}
	return r
}

func subWord(w uint32) uint32 {
	return uint32(sbox[w>>24])<<24 | uint32(sbox[w>>16&0xff])<<16 | uint32(sbox[w>>8&0xff])<<8 | uint32(sbox[w&0xff])
}

// expandKey is KeyExpansion (FIPS-197 5.2) of a 16-, 24- or 32-byte key: the 4*(nr+1) words of the
// encryption round keys are w[:4*(nr+1)], word i being bytes 4i..4i+3 of the schedule, most significant
// first. (An array, not a slice, so that it stays on the stack.)
func expandKey(key []byte) (w [4 * (maxRounds + 1)]uint32, nr int, err error) {
	if len(key) != 16 && len(key) != 24 && len(key) != 32 {
		return w, 0, fmt.Errorf("aes: key is %d bytes, want 16, 24 or 32", len(key))
	}
	nk := len(key) / 4
	nr = nk + 6
	for i := range nk {
		w[i] = uint32(key[4*i])<<24 | uint32(key[4*i+1])<<16 | uint32(key[4*i+2])<<8 | uint32(key[4*i+3])
	}
	rcon := byte(1)
	for i := nk; i < 4*(nr+1); i++ {
		t := w[i-1]
		switch {
		case i%nk == 0:
			t = subWord(t<<8|t>>24) ^ uint32(rcon)<<24
			rcon = xtime(rcon)
		case nk > 6 && i%nk == 4:
			t = subWord(t)
		}
		w[i] = w[i-nk] ^ t
	}
	return w, nr, nil
}

// refDecKeys derives the Equivalent Inverse Cipher's round keys (FIPS-197 5.3.5) from a 16-, 24- or
// 32-byte key, as decKeys.init does.
func refDecKeys(key []byte) (k decKeys, err error) {
	w, nr, err := expandKey(key)
	if err != nil {
		return k, err
	}
	k.nr = nr
	for i := 0; i <= k.nr; i++ {
		// Decryption round i uses encryption round key nr-i, through InvMixColumns but for the first
		// and last.
		for j, word := range w[4*(nr-i) : 4*(nr-i+1)] {
			if i > 0 && i < nr {
				word = invMixColumn(word)
			}
			binary.BigEndian.PutUint32(k.rk[i*BlockSize+4*j:], word)
		}
	}
	return k, nil
}

// invMixColumn is InvMixColumns (FIPS-197 5.3.3) on one column, a word of the key schedule.
func invMixColumn(w uint32) uint32 {
	return invMixTable[w>>24] ^ bits.RotateLeft32(invMixTable[w>>16&0xff], -8) ^
		bits.RotateLeft32(invMixTable[w>>8&0xff], -16) ^ bits.RotateLeft32(invMixTable[w&0xff], -24)
}
