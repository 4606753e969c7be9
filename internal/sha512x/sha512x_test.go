package sha512x

import (
	"bytes"
	"crypto/sha512"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
)

// forEachPath runs f with the assembly (where this CPU runs it) and with the fallback.
func forEachPath(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	hasAsm := useAsm
	t.Cleanup(func() { useAsm = hasAsm })
	if hasAsm {
		t.Run("asm", func(t *testing.T) {
			useAsm = true
			if _, ok := New().(*digest); !ok {
				t.Fatalf("New() = %T with the assembly on, want *digest", New())
			}
			f(t)
		})
	} else {
		t.Log("this build or CPU has no assembly: the fallback only")
	}
	t.Run("fallback", func(t *testing.T) {
		useAsm = false
		if _, ok := New().(*digest); ok {
			t.Fatal("New() is the package's digest with the assembly off")
		}
		f(t)
	})
}

// TestNISTVectors are the SHA-512 examples of FIPS 180-4 (NIST's "Example Algorithms" and the
// one-million-'a' test of FIPS 180-2).
func TestNISTVectors(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		for _, c := range []struct{ name, in, want string }{
			{"abc", "abc", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" +
				"2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"},
			{"896 bits", "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno" +
				"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
				"8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018" +
					"501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909"},
			{"million a", strings.Repeat("a", 1000000), "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb" +
				"de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"},
			{"empty", "", "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce" +
				"47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"},
		} {
			h := New()
			h.Write([]byte(c.in))
			if got := hex.EncodeToString(h.Sum(nil)); got != c.want {
				t.Errorf("%s: got %s, want %s", c.name, got, c.want)
			}
		}
	})
}

// writeChunked writes p to a new hash in pieces of random sizes (small ones often, so that
// partial blocks are buffered and completed) and returns the sum.
func writeChunked(r *rand.Rand, p []byte) []byte {
	h := New()
	for len(p) > 0 {
		var n int
		switch r.IntN(4) {
		case 0:
			n = r.IntN(BlockSize + 1)
		case 1:
			n = BlockSize * r.IntN(4)
		default:
			n = r.IntN(len(p) + 1)
		}
		n = min(n, len(p))
		if m, err := h.Write(p[:n]); m != n || err != nil {
			panic("short write")
		}
		p = p[n:]
	}
	return h.Sum(nil)
}

// TestEveryLength compares every length 0..1024 (all the block counts and tails of the pairing, a
// lone last block included) with crypto/sha512, written whole and in random chunks.
func TestEveryLength(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		buf := make([]byte, 1024+8)
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		for n := 0; n <= 1024; n++ {
			p := buf[n%8 : n%8+n] // unaligned starts too
			want := sha512.Sum512(p)
			h := New()
			h.Write(p)
			if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatalf("length %d whole: got %x, want %x", n, got, want)
			}
			if got := writeChunked(r, p); !bytes.Equal(got, want[:]) {
				t.Fatalf("length %d chunked: got %x, want %x", n, got, want)
			}
		}
	})
}

// TestRandomLengths compares random data of random lengths up to 1 MiB with crypto/sha512.
func TestRandomLengths(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		seed := rand.Uint64()
		r := rand.New(rand.NewPCG(seed, 3))
		buf := make([]byte, 1<<20+8)
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		for i := 0; i < 60; i++ {
			n := r.IntN(1<<20 + 1)
			off := r.IntN(8)
			p := buf[off : off+n]
			want := sha512.Sum512(p)
			if got := writeChunked(r, p); !bytes.Equal(got, want[:]) {
				t.Fatalf("seed %d: length %d at offset %d: got %x, want %x", seed, n, off, got, want)
			}
		}
	})
}

// TestSumKeepsState checks that Sum appends to its argument and leaves the hash as it was, so that
// writing on after a Sum gives the sum of everything written; and that Reset starts again.
func TestSumKeepsState(t *testing.T) {
	forEachPath(t, func(t *testing.T) {
		data := make([]byte, 3000)
		for i := range data {
			data[i] = byte(i * 7)
		}
		h := New()
		if h.Size() != 64 || h.BlockSize() != 128 {
			t.Fatalf("Size %d BlockSize %d, want 64 128", h.Size(), h.BlockSize())
		}
		for _, cut := range []int{0, 1, 127, 128, 129, 1000, 3000} {
			h.Reset()
			h.Write(data[:cut])
			prefix := []byte("prefix")
			first := h.Sum(prefix)
			wantFirst := sha512.Sum512(data[:cut])
			if !bytes.Equal(first[:len(prefix)], []byte("prefix")) || !bytes.Equal(first[len(prefix):], wantFirst[:]) {
				t.Fatalf("cut %d: Sum(prefix) = %x, want prefix then %x", cut, first, wantFirst)
			}
			if again := h.Sum(nil); !bytes.Equal(again, wantFirst[:]) {
				t.Fatalf("cut %d: a second Sum = %x, want %x", cut, again, wantFirst)
			}
			h.Write(data[cut:])
			want := sha512.Sum512(data)
			if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
				t.Fatalf("cut %d: writing on after Sum: got %x, want %x", cut, got, want)
			}
		}
		h.Reset()
		h.Write([]byte("abc"))
		want := sha512.Sum512([]byte("abc"))
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Fatalf("after Reset: got %x, want %x", got, want)
		}
	})
}
