// Package cbc implements the AES-256-CBC layout Rescale uses for files at rest: one random 32-byte key per
// file, a random 16-byte IV kept in the storage object's metadata, PKCS#7 padding on the last block, so
// the object is always CiphertextSize(plaintext) bytes long.
//
// CBC decrypts in place from any block given the ciphertext block before it, which is what makes ranged
// reads of an encrypted object possible (DecryptRange). Encryption is sequential, but it can be cut into
// parts as long as the chain (the last ciphertext block) is carried from one part to the next (Encrypter);
// that is how multipart uploads produce an object equal to whole-file CBC.
package cbc

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// BlockSize is the AES block size: the unit of CBC chaining, padding and ranged decryption.
const BlockSize = aes.BlockSize

// KeySize is the AES-256 key length.
const KeySize = 32

// ErrPadding reports a last block whose PKCS#7 padding does not match the plaintext size: the ciphertext
// is not what the key, IV and size say it is.
var ErrPadding = errors.New("cbc: bad padding")

// NewKey returns a fresh random AES-256 key.
func NewKey() []byte { return randomBytes(KeySize) }

// NewIV returns a fresh random IV.
func NewIV() []byte { return randomBytes(BlockSize) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	// crypto/rand.Read never fails on supported platforms (it panics internally if the OS source breaks).
	_, _ = rand.Read(b)
	return b
}

// CiphertextSize is the stored object size for a plaintext of plain bytes: PKCS#7 always adds 1 to 16 bytes.
func CiphertextSize(plain int64) int64 { return plain + BlockSize - plain%BlockSize }

// CipherRange names the ciphertext bytes [cstart, cend) needed to decrypt plaintext [off, off+n) of a file
// of plainSize bytes. When the range starts after block 0 it includes the block before the first one,
// which serves as the IV; a range starting in block 0 uses the file IV instead. The range is clamped to
// plainSize; an empty result (cstart == cend) means there is nothing to read.
func CipherRange(off, n, plainSize int64) (cstart, cend int64) {
	end := min(off+n, plainSize)
	if off < 0 || n <= 0 || off >= end {
		return 0, 0
	}
	first, last := off/BlockSize, (end-1)/BlockSize
	if first > 0 {
		cstart = (first - 1) * BlockSize
	}
	return cstart, (last + 1) * BlockSize
}

// DecryptRange decrypts the ciphertext that CipherRange(off, n, plainSize) named and returns plaintext
// [off, min(off+n, plainSize)). When the range reaches the block that holds the padding, the padding is
// checked, so a ciphertext that does not belong to this key and size is reported rather than returned.
func DecryptRange(key, fileIV []byte, plainSize, off, n int64, ciphertext []byte) ([]byte, error) {
	cstart, cend := CipherRange(off, n, plainSize)
	if cstart == cend {
		return []byte{}, nil
	}
	if int64(len(ciphertext)) != cend-cstart {
		return nil, fmt.Errorf("cbc: range [%d,%d) needs %d ciphertext bytes, got %d", off, off+n, cend-cstart, len(ciphertext))
	}
	block, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	first := off / BlockSize
	iv := fileIV
	if first > 0 {
		iv, ciphertext = ciphertext[:BlockSize], ciphertext[BlockSize:]
	}
	if len(iv) != BlockSize {
		return nil, fmt.Errorf("cbc: IV is %d bytes, want %d", len(iv), BlockSize)
	}
	plain := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ciphertext)

	base := first * BlockSize
	if pad := BlockSize - plainSize%BlockSize; pad < BlockSize && cend == plainSize+pad {
		// The range holds the last block, whose tail is padding; a mismatch means wrong key or data.
		for _, b := range plain[len(plain)-int(pad):] {
			if int64(b) != pad {
				return nil, ErrPadding
			}
		}
	}
	end := min(off+n, plainSize)
	return plain[off-base : end-base], nil
}

func newCipher(key []byte) (cipher.Block, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	return aes.NewCipher(key)
}

// checkKey accepts AES-256 keys only: that is what Rescale uses (KeySize).
func checkKey(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("cbc: key is %d bytes, want %d", len(key), KeySize)
	}
	return nil
}

// Encrypter encrypts a stream in parts with the CBC chain carried across parts, so that the parts laid end
// to end equal the whole-file encryption. Non-final parts must be whole blocks; the final part is padded.
// An Encrypter is not safe for concurrent use.
type Encrypter struct {
	block cipher.Block
	chain []byte // IV for the next part: the last ciphertext block so far, or the file IV at the start
	done  bool   // the final part has been encrypted
}

// NewEncrypter starts a chain at iv: the file IV for a new file, or the saved Chain() of an interrupted one.
func NewEncrypter(key, iv []byte) (*Encrypter, error) {
	block, err := newCipher(key)
	if err != nil {
		return nil, err
	}
	if len(iv) != BlockSize {
		return nil, fmt.Errorf("cbc: IV is %d bytes, want %d", len(iv), BlockSize)
	}
	return &Encrypter{block: block, chain: append([]byte(nil), iv...)}, nil
}

// Part encrypts src as the next part and returns the ciphertext (a new slice). A non-final src must be a
// multiple of BlockSize; the final one may be any length (even zero) and gets the PKCS#7 padding.
func (e *Encrypter) Part(src []byte, final bool) ([]byte, error) {
	out := make([]byte, len(src), len(src)+BlockSize)
	copy(out, src)
	return e.PartInPlace(out, final)
}

// PartInPlace is Part encrypting buf in place: the ciphertext is buf extended by the padding of a
// final part, which must fit in cap(buf) (BlockSize more than len(buf) always does). No allocation and
// no copy: an upload reuses its part buffers.
func (e *Encrypter) PartInPlace(buf []byte, final bool) ([]byte, error) {
	if e.done {
		return nil, errors.New("cbc: part after the final part")
	}
	n := len(buf)
	if final {
		n = len(buf) + BlockSize - len(buf)%BlockSize
	} else if len(buf)%BlockSize != 0 {
		return nil, fmt.Errorf("cbc: non-final part of %d bytes is not a multiple of %d", len(buf), BlockSize)
	}
	if n > cap(buf) {
		return nil, fmt.Errorf("cbc: no room for the padding: part of %d bytes in a buffer of %d", len(buf), cap(buf))
	}
	out := buf[:n]
	for i := len(buf); i < n; i++ {
		out[i] = byte(n - len(buf))
	}
	if n > 0 {
		cipher.NewCBCEncrypter(e.block, e.chain).CryptBlocks(out, out)
		copy(e.chain, out[n-BlockSize:])
	}
	e.done = final
	return out, nil
}

// Chain returns the IV for the next part: save it with a finished part to resume the chain later.
func (e *Encrypter) Chain() []byte { return append([]byte(nil), e.chain...) }
