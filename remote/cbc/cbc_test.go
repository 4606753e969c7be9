package cbc

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// reference is the whole-file encryption done the obvious way, which every other path must agree with.
func reference(t testing.TB, key, iv, plain []byte) []byte {
	t.Helper()
	pad := BlockSize - len(plain)%BlockSize
	padded := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(padded))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, padded)
	return out
}

func pseudoRandom(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

var sizes = []int{0, 1, 15, 16, 17, 31, 32, 33, 100, 4096, 4097, 70000}

func TestCiphertextSize(t *testing.T) {
	for _, tc := range []struct{ plain, want int64 }{{0, 16}, {1, 16}, {15, 16}, {16, 32}, {17, 32}, {1 << 30, 1<<30 + 16}} {
		if got := CiphertextSize(tc.plain); got != tc.want {
			t.Errorf("CiphertextSize(%d) = %d, want %d", tc.plain, got, tc.want)
		}
	}
}

func TestCipherRange(t *testing.T) {
	for _, tc := range []struct {
		name               string
		off, n, size       int64
		wantStart, wantEnd int64
	}{
		{"first byte", 0, 1, 100, 0, 16},
		{"block 0 whole", 0, 16, 100, 0, 16},
		{"into block 1", 15, 2, 100, 0, 32},
		{"block 1 needs block 0 as IV", 16, 1, 100, 0, 32},
		{"block 3", 50, 1, 100, 32, 64},
		{"last byte, partial block", 99, 1, 100, 80, 112},
		{"clamped past EOF", 90, 1000, 100, 64, 112},
		{"start at EOF", 100, 1, 100, 0, 0},
		{"empty", 10, 0, 100, 0, 0},
		{"aligned size, last byte", 31, 1, 32, 0, 32},
	} {
		s, e := CipherRange(tc.off, tc.n, tc.size)
		if s != tc.wantStart || e != tc.wantEnd {
			t.Errorf("%s: CipherRange(%d,%d,%d) = [%d,%d), want [%d,%d)", tc.name, tc.off, tc.n, tc.size, s, e, tc.wantStart, tc.wantEnd)
		}
	}
}

// TestDecryptRangeEveryRange checks every range of small files against the plaintext.
func TestDecryptRangeEveryRange(t *testing.T) {
	key, iv := NewKey(), NewIV()
	for _, size := range []int{0, 1, 15, 16, 17, 33, 48, 50} {
		plain := pseudoRandom(uint64(size), size)
		ct := reference(t, key, iv, plain)
		for off := 0; off <= size; off++ {
			for n := 0; off+n <= size+20; n++ {
				s, e := CipherRange(int64(off), int64(n), int64(size))
				got, err := DecryptRange(key, iv, int64(size), int64(off), int64(n), ct[s:e])
				if err != nil {
					t.Fatalf("size %d [%d,+%d): %v", size, off, n, err)
				}
				want := plain[off:min(off+n, size)]
				if !bytes.Equal(got, want) {
					t.Fatalf("size %d [%d,+%d): got %x want %x", size, off, n, got, want)
				}
			}
		}
	}
}

func TestDecryptRangeErrors(t *testing.T) {
	key, iv := NewKey(), NewIV()
	plain := pseudoRandom(7, 40)
	ct := reference(t, key, iv, plain)
	if _, err := DecryptRange(key, iv, 40, 0, 40, ct[:32]); err == nil {
		t.Error("short ciphertext accepted")
	}
	if _, err := DecryptRange(NewKey(), iv, 40, 0, 40, ct); !errors.Is(err, ErrPadding) {
		t.Errorf("wrong key: got %v, want ErrPadding", err)
	}
	if _, err := DecryptRange(key[:16], iv, 40, 0, 40, ct); err == nil {
		t.Error("short key accepted")
	}
}

func FuzzDecryptRange(f *testing.F) {
	f.Add(uint16(100), uint16(17), uint16(40), uint64(1))
	f.Add(uint16(32), uint16(31), uint16(1), uint64(2))
	f.Add(uint16(0), uint16(0), uint16(1), uint64(3))
	key, iv := NewKey(), NewIV()
	f.Fuzz(func(t *testing.T, size, off, n uint16, seed uint64) {
		plain := pseudoRandom(seed, int(size))
		ct := reference(t, key, iv, plain)
		s, e := CipherRange(int64(off), int64(n), int64(size))
		got, err := DecryptRange(key, iv, int64(size), int64(off), int64(n), ct[s:e])
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		if int(off) < int(size) {
			want = plain[off:min(int(off)+int(n), int(size))]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("[%d,+%d) of %d: mismatch", off, n, size)
		}
	})
}

// TestPartsEqualWholeFile: encrypting in parts with the chain carried (and resumed from Chain(), as an
// interrupted upload does) gives the same bytes as encrypting the whole file.
func TestPartsEqualWholeFile(t *testing.T) {
	key, iv := NewKey(), NewIV()
	for _, size := range sizes {
		plain := pseudoRandom(uint64(size)+100, size)
		want := reference(t, key, iv, plain)
		for _, partSize := range []int{16, 32, 4096} {
			var got []byte
			enc, err := NewEncrypter(key, iv)
			if err != nil {
				t.Fatal(err)
			}
			rest := plain
			for len(rest) > partSize {
				part, err := enc.Part(rest[:partSize], false)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, part...)
				rest = rest[partSize:]
				// Resume from the saved chain, as after a crash between parts.
				if enc, err = NewEncrypter(key, enc.Chain()); err != nil {
					t.Fatal(err)
				}
			}
			last, err := enc.Part(rest, true)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, last...)
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d parts of %d: ciphertext differs from whole-file CBC", size, partSize)
			}
			if _, err := enc.Part(nil, true); err == nil {
				t.Fatal("part after final accepted")
			}
		}
	}
	enc, _ := NewEncrypter(key, iv)
	if _, err := enc.Part(make([]byte, 17), false); err == nil {
		t.Error("non-final part of 17 bytes accepted")
	}
}

func TestStreams(t *testing.T) {
	key, iv := NewKey(), NewIV()
	for _, size := range append(sizes, streamChunk-1, streamChunk, streamChunk+1, 3*streamChunk+5) {
		plain := pseudoRandom(uint64(size)+200, size)
		want := reference(t, key, iv, plain)
		for name, wrap := range map[string]func(io.Reader) io.Reader{
			"plain": func(r io.Reader) io.Reader { return r },
			"1byte": iotest.OneByteReader,
			"half":  iotest.HalfReader,
		} {
			er, err := NewEncryptingReader(wrap(bytes.NewReader(plain)), key, iv)
			if err != nil {
				t.Fatal(err)
			}
			ct, err := io.ReadAll(er)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, want) {
				t.Fatalf("encrypting reader, size %d (%s): differs from whole-file CBC", size, name)
			}
			dr, err := NewDecryptingReader(wrap(bytes.NewReader(ct)), key, iv, int64(size))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(dr)
			if err != nil {
				t.Fatalf("decrypting reader, size %d (%s): %v", size, name, err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("decrypting reader, size %d (%s): plaintext differs", size, name)
			}
		}
	}
}

func TestDecryptingReaderRejects(t *testing.T) {
	key, iv := NewKey(), NewIV()
	plain := pseudoRandom(9, 1000)
	ct := reference(t, key, iv, plain)
	for _, tc := range []struct {
		name string
		ct   []byte
		size int64
	}{
		{"truncated", ct[:len(ct)-16], 1000},
		{"too long", append(append([]byte(nil), ct...), make([]byte, 16)...), 1000},
		{"wrong size", ct, 1001},
	} {
		dr, _ := NewDecryptingReader(bytes.NewReader(tc.ct), key, iv, tc.size)
		if _, err := io.ReadAll(dr); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	errRead := errors.New("disk on fire")
	er, _ := NewEncryptingReader(iotest.ErrReader(errRead), key, iv)
	if _, err := io.ReadAll(er); !errors.Is(err, errRead) {
		t.Errorf("encrypting reader hides source error: %v", err)
	}
}

func BenchmarkEncryptingReader(b *testing.B) {
	key, iv := NewKey(), NewIV()
	src := make([]byte, 64<<20)
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		er, _ := NewEncryptingReader(bytes.NewReader(src), key, iv)
		if _, err := io.Copy(io.Discard, er); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPartInPlace: the ciphertext is the buffer itself, and a final part whose padding does not fit
// in the buffer's capacity is refused rather than written past it.
func TestPartInPlace(t *testing.T) {
	key, iv := NewKey(), NewIV()
	plain := pseudoRandom(5, 40)
	enc, _ := NewEncrypter(key, iv)
	if _, err := enc.PartInPlace(append([]byte(nil), plain[:32]...)[:32:32], true); err == nil {
		t.Fatal("final part of 32 bytes accepted in a buffer of 32 (its padding is 16 more)")
	}
	buf := make([]byte, 40, 48)
	copy(buf, plain)
	ct, err := enc.PartInPlace(buf, true)
	if err != nil {
		t.Fatal(err)
	}
	if &ct[0] != &buf[0] || len(ct) != 48 {
		t.Fatalf("ciphertext of %d bytes, in place %v", len(ct), &ct[0] == &buf[0])
	}
	if !bytes.Equal(ct, reference(t, key, iv, plain)) {
		t.Fatal("ciphertext differs from whole-file CBC")
	}
}
