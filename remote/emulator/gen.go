package emulator

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/rescalefs/rescalefs/remote/cbc"
)

// Generated objects: large pseudo-random files that cost nothing to seed and nothing to store.
//
// CBC encryption is sequential (block i needs ciphertext block i-1), so encrypting a 512 MiB sample at
// seed time would be slow, and random access to a lazily encrypted stream impossible. Decryption is
// random access, though. So a generated object is defined by its ciphertext: every block but the last is
// an AES-CTR keystream block (seekable, AES-NI fast), and the plaintext is whatever that ciphertext
// decrypts to under the file's key and IV: pseudo-random bytes, as a solver's binary results look. Only
// the last block is computed by encryption, so that it decrypts to valid PKCS#7 padding. The object is a
// true AES-256-CBC encryption of its plaintext: /contents/ and S3 clients cannot tell the difference.

// genSpec fully determines a generated object; it is what the journal keeps instead of bytes.
type genSpec struct {
	Seed      uint64 `json:"seed"`
	Key       []byte `json:"key"`
	IV        []byte `json:"iv"`
	PlainSize int64  `json:"plainSize"`
}

// genKeys derives a file's AES key and IV from its seed, so a generated file is the same bytes in every
// run (the sample set is deterministic, checksums included).
func genKeys(seed uint64) (key, iv []byte) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seed)
	k := sha256.Sum256(append([]byte("rescalefs emulator key "), b[:]...))
	v := sha256.Sum256(append([]byte("rescalefs emulator iv "), b[:]...))
	return k[:], v[:cbc.BlockSize]
}

type genObject struct {
	spec   genSpec
	stream cipher.Block // keystream cipher (CTR over block numbers)
	nblk   int64        // ciphertext blocks
	last   [cbc.BlockSize]byte
}

func newGenObject(spec genSpec) (*genObject, error) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], spec.Seed)
	sk := sha256.Sum256(append([]byte("rescalefs emulator stream "), b[:]...))
	stream, err := aes.NewCipher(sk[:])
	if err != nil {
		return nil, err
	}
	file, err := aes.NewCipher(spec.Key)
	if err != nil {
		return nil, fmt.Errorf("generated object: %w", err)
	}
	g := &genObject{spec: spec, stream: stream, nblk: cbc.CiphertextSize(spec.PlainSize) / cbc.BlockSize}
	// The final plaintext block: the file's last (size % 16) bytes, taken from the keystream so they are
	// as random as the rest, then the padding. Encrypt it with the previous ciphertext block as chain.
	var final, prev [cbc.BlockSize]byte
	g.keystream(final[:], (g.nblk-1)*cbc.BlockSize)
	rem := int(spec.PlainSize % cbc.BlockSize)
	for i := rem; i < cbc.BlockSize; i++ {
		final[i] = byte(cbc.BlockSize - rem)
	}
	if g.nblk >= 2 {
		g.keystream(prev[:], (g.nblk-2)*cbc.BlockSize)
	} else {
		copy(prev[:], spec.IV)
	}
	for i := range final {
		final[i] ^= prev[i]
	}
	file.Encrypt(g.last[:], final[:])
	return g, nil
}

// keystream fills p with the CTR keystream starting at byte off (any alignment).
func (g *genObject) keystream(p []byte, off int64) {
	var ctr [cbc.BlockSize]byte
	binary.BigEndian.PutUint64(ctr[8:], uint64(off/cbc.BlockSize))
	s := cipher.NewCTR(g.stream, ctr[:])
	skip := int(off % cbc.BlockSize)
	if skip > 0 {
		var junk [cbc.BlockSize]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	clear(p)
	s.XORKeyStream(p, p)
}

func (g *genObject) Size() int64 { return g.nblk * cbc.BlockSize }

func (g *genObject) ReadAt(p []byte, off int64) (int, error) {
	size := g.Size()
	if off >= size {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), size-off))
	g.keystream(p[:n], off)
	lastOff := (g.nblk - 1) * cbc.BlockSize
	if end := off + int64(n); end > lastOff {
		from := max(off, lastOff)
		copy(p[from-off:n], g.last[from-lastOff:])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// genPlainSHA512 computes the plaintext checksum of a generated object: one sequential pass that
// decrypts the generated ciphertext (and checks its padding, as a self-test of the construction).
func genPlainSHA512(spec genSpec) (string, error) {
	g, err := newGenObject(spec)
	if err != nil {
		return "", err
	}
	plain, err := cbc.NewDecryptingReader(io.NewSectionReader(g, 0, g.Size()), spec.Key, spec.IV, spec.PlainSize)
	if err != nil {
		return "", err
	}
	h := sha512.New()
	// Sized to the file: the demo seeds 10,000 small files, and a 1 MiB buffer each was most of its
	// start-up time.
	buf := make([]byte, max(1, min(1<<20, spec.PlainSize)))
	if _, err := io.CopyBuffer(h, plain, buf); err != nil {
		return "", fmt.Errorf("generated object: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
