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

// keySchedule is one way of computing the round keys of a 16-, 24- or 32-byte key: the encryption
// round keys as the words of FIPS-197's KeyExpansion, and the decryption ones.
type keySchedule struct {
	name   string
	expand func(t *testing.T, key []byte) (w [4 * (maxRounds + 1)]uint32, dk decKeys)
}

// refSchedule is the Go reference of aeskey_ref_test.go.
var refSchedule = keySchedule{"go", func(t *testing.T, key []byte) (w [4 * (maxRounds + 1)]uint32, dk decKeys) {
	w, _, err := expandKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dk, err = refDecKeys(key)
	if err != nil {
		t.Fatal(err)
	}
	return w, dk
}}

// keySchedules are the reference and, on a CPU that has AES-NI, the assembly that decKeys.init runs.
// The assembly's output buffers start filled with 0xa5, and it must write nothing past nr+1 round keys.
func keySchedules() []keySchedule {
	s := []keySchedule{refSchedule}
	if useAESNI {
		s = append(s, keySchedule{"aesni", func(t *testing.T, key []byte) (w [4 * (maxRounds + 1)]uint32, dk decKeys) {
			var enc roundKeys
			for i := range enc {
				enc[i], dk.rk[i] = 0xa5, 0xa5
			}
			if err := dk.initEnc(key, &enc); err != nil {
				t.Fatal(err)
			}
			if want := len(key)/4 + 6; dk.nr != want {
				t.Fatalf("key %x: %d rounds, want %d", key, dk.nr, want)
			}
			n := (dk.nr + 1) * BlockSize
			for name, b := range map[string][]byte{"encryption": enc[n:], "decryption": dk.rk[n:]} {
				if bytes.Count(b, []byte{0xa5}) != len(b) {
					t.Fatalf("key %x: %s round keys written past round key %d", key, name, dk.nr)
				}
			}
			for i := range 4 * (dk.nr + 1) {
				w[i] = binary.BigEndian.Uint32(enc[4*i:])
			}
			return w, dk
		}})
	}
	return s
}

// fips197Schedules are the key expansion examples of FIPS-197 Appendix A (A.1, A.2, A.3): the words of
// the whole schedule, the key first.
var fips197Schedules = []struct {
	keySize int
	words   string
}{
	{16, "2b7e151628aed2a6abf7158809cf4f3ca0fafe1788542cb123a339392a6c7605f2c295f27a96b9435935807a7359f67f" +
		"3d80477d4716fe3e1e237e446d7a883bef44a541a8525b7fb671253bdb0bad00d4d1c6f87c839d87caf2b8bc11f915bc" +
		"6d88a37a110b3efddbf98641ca0093fd4e54f70e5f5fc9f384a64fb24ea6dc4fead27321b58dbad2312bf5607f8d292f" +
		"ac7766f319fadc2128d12941575c006ed014f9a8c9ee2589e13f0cc8b6630ca6"},
	{24, "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7bfe0c91f72402f5a5ec12068e6c827f6b0e7a95b95c56fec2" +
		"4db7b4bd69b5411885a74796e92538fde75fad44bb095386485af05721efb14fa448f6d94d6dce24aa326360113b30e6" +
		"a25e7ed583b1cf9a27f939436a94f767c0a69407d19da4e1ec1786eb6fa64971485f703222cb8755e26d135233f0b7b3" +
		"40beeb282f18a2596747d26b458c553ea7e1466c9411f1df821f750aad07d753ca4005388fcc5006282d166abc3ce7b5" +
		"e98ba06f448c773c8ecc720401002202"},
	{32, "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff49ba354118e6925afa51a8b5f2067fcde" +
		"a8b09c1a93d194cdbe49846eb75d5b9ad59aecb85bf3c917fee94248de8ebe96b5a9328a2678a647983122292f6c79b3" +
		"812c81addadf48ba24360af2fab8b46498c5bfc9bebd198e268c3ba709e0421468007bacb2df331696e939e46c518d80" +
		"c814e20476a9fb8a5025c02d59c58239de1369676ccc5a71fa2563959674ee155886ca5d2e2f31d77e0af1fa27cf73c3" +
		"749c47ab18501ddae2757e4f7401905acafaaae3e4d59b349adf6acebd10190dfe4890d1e6188d0b046df344706c631e"},
}

// TestExpandKeyFIPS197: every key schedule gives the key expansion examples of FIPS-197 Appendix A, for
// the three key sizes, and nothing past them; a key of another size is refused.
func TestExpandKeyFIPS197(t *testing.T) {
	for _, ks := range keySchedules() {
		for _, tc := range fips197Schedules {
			want := unhex(t, tc.words)
			key := want[:tc.keySize]
			w, dk := ks.expand(t, key)
			if n := len(want) / BlockSize; dk.nr+1 != n {
				t.Errorf("%s: key %x: %d rounds, want %d", ks.name, key, dk.nr, n-1)
			}
			for i := range w {
				var wantW uint32
				if 4*i < len(want) {
					wantW = binary.BigEndian.Uint32(want[4*i:])
				}
				if w[i] != wantW {
					t.Errorf("%s: key %x: w[%d] = %08x, want %08x", ks.name, key, i, w[i], wantW)
				}
			}
		}
	}
	for _, n := range []int{0, 15, 17, 31, 33} {
		if _, _, err := expandKey(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key: no error", n)
		}
		// decKeys.init checks the length before it reaches the assembly, so this runs in every build.
		var k decKeys
		if err := k.init(make([]byte, n)); err == nil {
			t.Errorf("%d-byte key: no error from decKeys.init", n)
		}
	}
}

// TestKeyScheduleMatchesReference: for the FIPS-197 keys and a thousand random keys of each size, the
// assembly gives the reference's encryption round keys and decryption round keys.
func TestKeyScheduleMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	var keys [][]byte
	for _, tc := range fips197Schedules {
		keys = append(keys, unhex(t, tc.words)[:tc.keySize])
	}
	for _, keySize := range []int{16, 24, 32} {
		for range 1000 {
			key := make([]byte, keySize)
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			keys = append(keys, key)
		}
	}
	for _, ks := range keySchedules()[1:] {
		for _, key := range keys {
			w, dk := ks.expand(t, key)
			wantW, wantDK := refSchedule.expand(t, key)
			if w != wantW {
				for i := range w {
					if w[i] != wantW[i] {
						t.Fatalf("%s: key %x: w[%d] = %08x, want %08x", ks.name, key, i, w[i], wantW[i])
					}
				}
			}
			if dk.nr != wantDK.nr {
				t.Fatalf("%s: key %x: %d rounds, want %d", ks.name, key, dk.nr, wantDK.nr)
			}
			n := (dk.nr + 1) * BlockSize
			if got, want := dk.rk[:n], wantDK.rk[:n]; !bytes.Equal(got, want) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				t.Fatalf("%s: key %x: decryption round key %d = %x, want %x", ks.name, key, i/BlockSize,
					got[i/BlockSize*BlockSize:][:BlockSize], want[i/BlockSize*BlockSize:][:BlockSize])
			}
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
	k, err := refDecKeys(key)
	if err != nil {
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

// cbcImpl is one way of decrypting CBC in place with the chain carried in iv: prepare expands the key
// and returns the decryption with it.
type cbcImpl struct {
	name    string
	prepare func(t testing.TB, key []byte) func(iv *[BlockSize]byte, b []byte)
}

// decrypt is prepare and the decryption in one.
func (c cbcImpl) decrypt(t testing.TB, key []byte, iv *[BlockSize]byte, b []byte) {
	c.prepare(t, key)(iv, b)
}

// cbcImpls are the generic path and, on a CPU that has them, the AES-NI and VAES ones: decryptAESNI
// with useVAES forced off and on.
func cbcImpls() []cbcImpl {
	impls := []cbcImpl{{"generic", func(t testing.TB, key []byte) func(*[BlockSize]byte, []byte) {
		block, err := aes.NewCipher(key)
		if err != nil {
			t.Fatal(err)
		}
		return func(iv *[BlockSize]byte, b []byte) { decryptGeneric(block, iv, b) }
	}}}
	asm := func(vaes bool) func(t testing.TB, key []byte) func(*[BlockSize]byte, []byte) {
		return func(t testing.TB, key []byte) func(*[BlockSize]byte, []byte) {
			var k decKeys
			if err := k.init(key); err != nil {
				t.Fatal(err)
			}
			return func(iv *[BlockSize]byte, b []byte) {
				saved := useVAES
				useVAES = vaes
				decryptAESNI(&k, iv, b)
				useVAES = saved
			}
		}
	}
	if useAESNI {
		impls = append(impls, cbcImpl{"aesni", asm(false)})
	}
	if useVAES {
		impls = append(impls, cbcImpl{"vaes", asm(true)})
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

// TestDecryptMatchesStdlib: every length from 0 to 64 blocks (up to four rounds of the 16-block and
// eight of the 8-block loops, and after them a tail of every length, which takes the VAES tail's
// passes of 8, 4, 2 and 1 blocks in every combination) and a few large ones, random keys of each size,
// decrypted in place (at unaligned addresses too) in one call, and in one to three calls with the
// chain carried between them, give what crypto/cipher's CBC decrypter gives, leave the last ciphertext
// block as the chain, and touch no byte around the buffer.
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
	for n := 0; n <= 64*BlockSize; n += BlockSize {
		lengths = append(lengths, n)
	}
	lengths = append(lengths, 4<<10, 64<<10+7*BlockSize, 1<<20+3*BlockSize, 1<<20+15*BlockSize)
	const guard = 48
	for _, impl := range cbcImpls() {
		for _, keySize := range []int{16, 24, 32} {
			for _, n := range lengths {
				for _, split := range []bool{false, true} {
					name := fmt.Sprintf("%s/key%d/%d/whole", impl.name, keySize*8, n)
					if split {
						name = fmt.Sprintf("%s/key%d/%d/cut", impl.name, keySize*8, n)
					}
					t.Run(name, func(t *testing.T) {
						key, iv0, ct := random(keySize), [BlockSize]byte(random(BlockSize)), random(n)
						block, err := aes.NewCipher(key)
						if err != nil {
							t.Fatal(err)
						}
						want := make([]byte, n)
						cipher.NewCBCDecrypter(block, iv0[:]).CryptBlocks(want, ct)
						wantIV := iv0
						if n > 0 {
							wantIV = [BlockSize]byte(ct[n-BlockSize:])
						}

						// The buffer starts at an offset of 0 to 15 bytes from a 16-byte multiple past the guard.
						shift := (n/BlockSize + keySize) % BlockSize
						mem := bytes.Repeat([]byte{0xa5}, guard+shift+n+guard)
						buf := mem[guard+shift : guard+shift+n]
						copy(buf, ct)
						// One call, or up to three cut at random block borders.
						cuts := []int{0, 0, 0, n}
						if split {
							cuts[1], cuts[2] = rng.IntN(n/BlockSize+1)*BlockSize, rng.IntN(n/BlockSize+1)*BlockSize
							if cuts[1] > cuts[2] {
								cuts[1], cuts[2] = cuts[2], cuts[1]
							}
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
						if iv != wantIV {
							t.Errorf("cut at %v: chain %x, want the last ciphertext block (or the IV) %x", cuts, iv, wantIV)
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

// BenchmarkDecrypt: the paths side by side on 1 MiB in place, with an AES-256 key.
//
//	go test -run '^$' -bench 'Decrypt$' -count 6 ./remote/cbc/
func BenchmarkDecrypt(b *testing.B) { benchmarkDecrypt(b, 1<<20) }

// BenchmarkDecryptSmall: the same on 95 blocks (1520 bytes, a small read of a body), where the tail of
// 15 blocks after the 16- or 8-block loop weighs.
func BenchmarkDecryptSmall(b *testing.B) { benchmarkDecrypt(b, 95*BlockSize) }

func benchmarkDecrypt(b *testing.B, size int) {
	key := NewKey()
	buf := make([]byte, size)
	for _, impl := range cbcImpls() {
		b.Run(impl.name, func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			var iv [BlockSize]byte
			decrypt := impl.prepare(b, key)
			cpu0 := cpuTime()
			for b.Loop() {
				decrypt(&iv, buf)
			}
			// CPU time rather than wall time: the machine is shared.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/(float64(b.N)*float64(size)/(1<<30)), "cpu-s/GiB")
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
