package cbc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSbox: values of the S-box table in FIPS-197 Figure 7 (and the SubBytes example of 5.1.1).
func TestSbox(t *testing.T) {
	for in, want := range map[byte]byte{0x00: 0x63, 0x01: 0x7c, 0x53: 0xed, 0x10: 0xca, 0x9a: 0xb8, 0xc9: 0xdd, 0xff: 0x16} {
		if got := sbox[in]; got != want {
			t.Errorf("S(%#02x) = %#02x, want %#02x", in, got, want)
		}
	}
}

// TestExpandKeyFIPS197: the key expansion examples of FIPS-197 Appendix A, for the three key sizes.
func TestExpandKeyFIPS197(t *testing.T) {
	for _, tc := range []struct {
		key  string
		nr   int
		want map[int]uint32 // word index: value
	}{
		{"2b7e151628aed2a6abf7158809cf4f3c", 10, map[int]uint32{
			3: 0x09cf4f3c, 4: 0xa0fafe17, 5: 0x88542cb1, 6: 0x23a33939, 7: 0x2a6c7605,
			40: 0xd014f9a8, 41: 0xc9ee2589, 42: 0xe13f0cc8, 43: 0xb6630ca6}},
		{"8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b", 12, map[int]uint32{
			5: 0x522c6b7b, 6: 0xfe0c91f7, 7: 0x2402f5a5, 8: 0xec12068e,
			48: 0xe98ba06f, 49: 0x448c773c, 50: 0x8ecc7204, 51: 0x01002202}},
		{"603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4", 14, map[int]uint32{
			7: 0x0914dff4, 8: 0x9ba35411, 9: 0x8e6925af, 12: 0xa8b09c1a,
			56: 0xfe4890d1, 57: 0xe6188d0b, 58: 0x046df344, 59: 0x706c631e}},
	} {
		w, nr, err := expandKey(unhex(t, tc.key))
		if err != nil {
			t.Fatal(err)
		}
		if nr != tc.nr {
			t.Errorf("key %s: %d rounds, want %d", tc.key, nr, tc.nr)
		}
		for i, want := range tc.want {
			if w[i] != want {
				t.Errorf("key %s: w[%d] = %08x, want %08x", tc.key, i, w[i], want)
			}
		}
		for i := 4 * (nr + 1); i < len(w); i++ {
			if w[i] != 0 {
				t.Errorf("key %s: w[%d] = %08x past the schedule", tc.key, i, w[i])
			}
		}
	}
	for _, n := range []int{0, 15, 17, 31, 33} {
		if _, _, err := expandKey(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key: no error", n)
		}
	}
}

// TestInvMixColumn: InvMixColumns undoes the MixColumns examples of the AES literature (column in,
// column out), and the decryption round keys are the encryption ones reversed with InvMixColumns on all
// but the first and last.
func TestInvMixColumn(t *testing.T) {
	for mixed, col := range map[uint32]uint32{0x8e4da1bc: 0xdb135345, 0x9fdc589d: 0xf20a225c,
		0x01010101: 0x01010101, 0xc6c6c6c6: 0xc6c6c6c6, 0xd5d5d7d6: 0xd4d4d4d5, 0x4d7ebdf8: 0x2d26314c} {
		if got := invMixColumn(mixed); got != col {
			t.Errorf("InvMixColumns(%08x) = %08x, want %08x", mixed, got, col)
		}
	}

	key := unhex(t, "2b7e151628aed2a6abf7158809cf4f3c")
	var k decKeys
	if err := k.init(key); err != nil {
		t.Fatal(err)
	}
	// Round key 10 (FIPS-197 Appendix A.1, words 40-43) comes first, the key itself last.
	if got := hex.EncodeToString(k.rk[:BlockSize]); got != "d014f9a8c9ee2589e13f0cc8b6630ca6" {
		t.Errorf("first decryption round key %s", got)
	}
	if got := k.rk[10*BlockSize : 11*BlockSize]; !bytes.Equal(got, key) {
		t.Errorf("last decryption round key %x, want the key", got)
	}
	// Round key 1 (words 4-7) is the one before last, through InvMixColumns.
	rk1 := make([]byte, 0, BlockSize)
	for _, w := range []uint32{0xa0fafe17, 0x88542cb1, 0x23a33939, 0x2a6c7605} {
		rk1 = binary.BigEndian.AppendUint32(rk1, invMixColumn(w))
	}
	if got := k.rk[9*BlockSize : 10*BlockSize]; !bytes.Equal(got, rk1) {
		t.Errorf("decryption round key 9 %x, want %x", got, rk1)
	}
}

// cbcImpl is one way of decrypting CBC in place with the chain carried in iv.
type cbcImpl struct {
	name    string
	decrypt func(t testing.TB, key []byte, iv *[BlockSize]byte, b []byte)
}

// cbcImpls are the generic path and, on a CPU that has it, the AES-NI one.
func cbcImpls() []cbcImpl {
	impls := []cbcImpl{{"generic", func(t testing.TB, key []byte, iv *[BlockSize]byte, b []byte) {
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		decryptGeneric(block, iv, b)
	}}}
	if useAESNI {
		impls = append(impls, cbcImpl{"aesni", func(t testing.TB, key []byte, iv *[BlockSize]byte, b []byte) {
			var k decKeys
			if err := k.init(key); err != nil {
				t.Fatal(err)
			}
			decryptAESNI(&k, iv, b)
		}})
	}
	return impls
}

// TestDecryptFIPS197: the single-block examples of FIPS-197 Appendix C, for the three key sizes (CBC
// with a zero IV on one block is the bare cipher).
func TestDecryptFIPS197(t *testing.T) {
	for _, impl := range cbcImpls() {
		for _, tc := range []struct{ key, ct string }{
			{"000102030405060708090a0b0c0d0e0f", "69c4e0d86a7b0430d8cdb78070b4c55a"},
			{"000102030405060708090a0b0c0d0e0f1011121314151617", "dda97ca4864cdfe06eaf70a0ec0d7191"},
			{"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "8ea2b7ca516745bfeafc49904b496089"},
		} {
			var iv [BlockSize]byte
			b := unhex(t, tc.ct)
			impl.decrypt(t, unhex(t, tc.key), &iv, b)
			if got := hex.EncodeToString(b); got != "00112233445566778899aabbccddeeff" {
				t.Errorf("%s: key %s: decrypts to %s", impl.name, tc.key, got)
			}
			if got := hex.EncodeToString(iv[:]); got != tc.ct {
				t.Errorf("%s: key %s: chain %s, want the ciphertext", impl.name, tc.key, got)
			}
		}
	}
}

// TestDecryptMatchesStdlib: every length from 1 to 25 blocks (three rounds of the 8-block loop and a
// tail of every length) and a few large ones, random keys of each size, decrypted in place (at
// unaligned addresses too) in one to three calls with the chain carried between them, give what
// crypto/cipher's CBC decrypter gives, leave the last ciphertext block as the chain, and touch no byte
// around the buffer.
func TestDecryptMatchesStdlib(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var lengths []int
	for n := BlockSize; n <= 8*BlockSize*3+BlockSize; n += BlockSize {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 4<<10, 64<<10+7*BlockSize, 1<<20+3*BlockSize)
	const guard = 48
	for _, impl := range cbcImpls() {
		for _, keySize := range []int{16, 24, 32} {
			for _, n := range lengths {
				t.Run(fmt.Sprintf("%s/key%d/%d", impl.name, keySize*8, n), func(t *testing.T) {
					key, iv0, ct := random(keySize), [BlockSize]byte(random(BlockSize)), random(n)
					block, err := aes.NewCipher(key)
					if err != nil {
						t.Fatal(err)
					}
					want := make([]byte, n)
					cipher.NewCBCDecrypter(block, iv0[:]).CryptBlocks(want, ct)

					// The buffer starts at an offset of 0 to 15 bytes from a 16-byte multiple past the guard.
					shift := n / BlockSize % BlockSize
					mem := bytes.Repeat([]byte{0xa5}, guard+shift+n+guard)
					buf := mem[guard+shift : guard+shift+n]
					copy(buf, ct)
					// Cut into up to three calls at random block borders.
					cuts := []int{0, rng.IntN(n/BlockSize+1) * BlockSize, rng.IntN(n/BlockSize+1) * BlockSize, n}
					if cuts[1] > cuts[2] {
						cuts[1], cuts[2] = cuts[2], cuts[1]
					}
					iv := iv0
					for i := range 3 {
						impl.decrypt(t, key, &iv, buf[cuts[i]:cuts[i+1]])
					}
					if !bytes.Equal(buf, want) {
						i := 0
						for buf[i] == want[i] {
							i++
						}
						t.Fatalf("cut at %v: plaintext differs from block %d on", cuts, i/BlockSize)
					}
					if !bytes.Equal(iv[:], ct[n-BlockSize:]) {
						t.Errorf("cut at %v: chain %x, want the last ciphertext block %x", cuts, iv, ct[n-BlockSize:])
					}
					for _, g := range [][]byte{mem[:guard+shift], mem[guard+shift+n:]} {
						if bytes.Count(g, []byte{0xa5}) != len(g) {
							t.Fatalf("bytes around the buffer changed")
						}
					}
				})
			}
		}
	}
}

// TestDecryptManyKeys: with a thousand random keys of each size, what crypto/aes encrypts (9 blocks in
// CBC) decrypts back to the plaintext.
func TestDecryptManyKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, impl := range cbcImpls() {
		for _, keySize := range []int{16, 24, 32} {
			for range 1000 {
				key, plain := make([]byte, keySize), make([]byte, 9*BlockSize)
				var iv [BlockSize]byte
				for _, b := range [][]byte{key, plain, iv[:]} {
					for i := range b {
						b[i] = byte(rng.Uint32())
					}
				}
				block, err := aes.NewCipher(key)
				if err != nil {
					t.Fatal(err)
				}
				b := make([]byte, len(plain))
				cipher.NewCBCEncrypter(block, iv[:]).CryptBlocks(b, plain)
				impl.decrypt(t, key, &iv, b)
				if !bytes.Equal(b, plain) {
					t.Fatalf("%s: key %x: the decryption differs from the plaintext", impl.name, key)
				}
			}
		}
	}
}

// BenchmarkDecrypt: the two paths side by side on 1 MiB in place, with an AES-256 key.
//
//	go test -run '^$' -bench 'Decrypt$' -count 6 ./remote/cbc/
func BenchmarkDecrypt(b *testing.B) {
	key := NewKey()
	buf := make([]byte, 1<<20)
	for _, impl := range cbcImpls() {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			var iv [BlockSize]byte
			for b.Loop() {
				impl.decrypt(b, key, &iv, buf)
			}
		})
	}
}

// BenchmarkDecKeys: the key schedule a RangeDecrypter computes for each range, beside crypto/aes's own.
func BenchmarkDecKeys(b *testing.B) {
	key := NewKey()
	b.Run("decKeys", func(b *testing.B) {
		var k decKeys
		for b.Loop() {
			if err := k.init(key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("aes.NewCipher", func(b *testing.B) {
		for b.Loop() {
			if _, err := aes.NewCipher(key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
