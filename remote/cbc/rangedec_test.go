package cbc

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// feed gives d the ciphertext ct the way a body reader does: each read fills at most the next piece
// length (cycling through pieces) of what Next returns. It counts the bytes that went through the stash.
func feed(d *RangeDecrypter, ct []byte, pieces []int) (stashed int, err error) {
	for i := 0; len(ct) > 0; i++ {
		p := d.Next()
		if len(p) == 0 {
			return stashed, fmt.Errorf("Next is empty with %d bytes to go", len(ct))
		}
		k := copy(p[:min(len(p), pieces[i%len(pieces)])], ct)
		if d.stashed {
			stashed += k
		}
		if err := d.Advance(k); err != nil {
			return stashed, err
		}
		ct = ct[k:]
	}
	if p := d.Next(); len(p) != 0 {
		return stashed, fmt.Errorf("Next is %d bytes after the whole range", len(p))
	}
	return stashed, nil
}

// forEachPath runs f once for each way RangeDecrypter can decrypt on this machine: with crypto/aes (the
// fallback, forced through useAESNI) and, on a CPU with AES-NI, with the assembly, 8 blocks at a time
// (useVAES forced off) and, on a CPU with VAES, 16 at a time; it checks that a new decrypter takes the
// path asked for.
func forEachPath(t *testing.T, f func(t *testing.T)) {
	savedAESNI, savedVAES := useAESNI, useVAES
	t.Cleanup(func() { useAESNI, useVAES = savedAESNI, savedVAES })
	paths := []string{"generic"}
	if savedAESNI {
		paths = append(paths, "aesni")
	}
	if savedVAES {
		paths = append(paths, "vaes")
	}
	for _, path := range paths {
		useAESNI, useVAES = path != "generic", path == "vaes"
		d, err := NewRangeDecrypter(NewKey(), 100, 0, [][]byte{make([]byte, 100)})
		if err != nil {
			t.Fatal(err)
		}
		if d.aesni != useAESNI {
			t.Fatalf("useAESNI %v: the decrypter's aesni is %v", useAESNI, d.aesni)
		}
		t.Run(path, f)
	}
}

// split cuts n bytes into buffers: the given lengths in turn, the last one whatever is left.
func split(n int, lens []int) [][]byte {
	var out [][]byte
	for i := 0; n > 0; i++ {
		k := min(n, lens[i%len(lens)])
		out = append(out, make([]byte, k))
		n -= k
	}
	return out
}

// TestRangeDecrypterMatchesDecryptRange: ranges of files around the block size (offsets 0, 15, 16, 17,
// size-1 among them; ranges ending at the padded last block and before it), ciphertext arriving in
// pieces of many lengths (not multiples of 16, and straddling buffers), destinations split into
// buffers whose borders fall inside AES blocks, with empty buffers between: the buffers hold exactly
// what DecryptRange returns, and only the blocks that cannot be decrypted where they lie go through the
// stash.
func TestRangeDecrypterMatchesDecryptRange(t *testing.T) {
	forEachPath(t, testRangeDecrypterMatchesDecryptRange)
}

func testRangeDecrypterMatchesDecryptRange(t *testing.T) {
	key, iv := NewKey(), NewIV()
	rng := rand.New(rand.NewPCG(5, 6))
	randomPieces := make([]int, 50)
	for i := range randomPieces {
		randomPieces[i] = 1 + rng.IntN(100)
	}
	pieceSets := map[string][]int{"1": {1}, "7": {7}, "16": {16}, "17": {17}, "4096": {4096},
		"random": randomPieces, "all": {1 << 30}}
	splits := map[string][]int{"one": {1 << 30}, "1": {1}, "15": {15}, "16": {16}, "33": {33},
		"40,0,24": {40, 0, 24}, "random": randomPieces}
	for _, size := range []int{1, 15, 16, 17, 32, 33, 50, 4099} {
		plain := pseudoRandom(uint64(size), size)
		ct := reference(t, key, iv, plain)
		type rg struct{ off, n int }
		var ranges []rg
		if size <= 50 {
			for off := range size {
				for n := 1; off+n <= size; n++ {
					ranges = append(ranges, rg{off, n})
				}
			}
		} else {
			for _, off := range []int{0, 1, 15, 16, 17, 31, 32, 33, 1000, size - 33, size - 17, size - 16, size - 15, size - 1} {
				for _, n := range []int{1, 15, 16, 17, 100, size - off - 17, size - off - 1, size - off} {
					if n > 0 && off+n <= size {
						ranges = append(ranges, rg{off, n})
					}
				}
			}
		}
		for _, r := range ranges {
			cs, ce := CipherRange(int64(r.off), int64(r.n), int64(size))
			want, err := DecryptRange(key, iv, int64(size), int64(r.off), int64(r.n), ct[cs:ce])
			if err != nil {
				t.Fatal(err)
			}
			for pn, pieces := range pieceSets {
				for sn, lens := range splits {
					dst := split(r.n, lens)
					d, err := NewRangeDecrypter(key, int64(size), int64(r.off), dst)
					if err != nil {
						t.Fatal(err)
					}
					if d.NeedsIV() != (r.off < BlockSize) {
						t.Fatalf("size %d [%d,+%d): NeedsIV %v", size, r.off, r.n, d.NeedsIV())
					}
					if d.NeedsIV() {
						if err := d.SetIV(iv); err != nil {
							t.Fatal(err)
						}
					}
					if d.Remaining() != ce-cs {
						t.Fatalf("Remaining %d, want %d", d.Remaining(), ce-cs)
					}
					// OnPlain's pieces, per buffer, must be exactly that buffer's final bytes, in order.
					seen := make([][]byte, len(dst))
					d.OnPlain(func(i int, p []byte) {
						if len(p) == 0 || &dst[i][len(seen[i])] != &p[0] {
							t.Fatalf("OnPlain(%d) of %d bytes not where buffer %d continues", i, len(p), i)
						}
						seen[i] = append(seen[i], p...)
					})
					stashed, err := feed(d, bytes.Clone(ct[cs:ce]), pieces)
					name := fmt.Sprintf("size %d [%d,+%d) pieces %s buffers %s", size, r.off, r.n, pn, sn)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					for i := range dst {
						if !bytes.Equal(seen[i], dst[i]) {
							t.Fatalf("%s: OnPlain gave buffer %d as %x, it holds %x", name, i, seen[i], dst[i])
						}
					}
					if got := bytes.Join(dst, nil); !bytes.Equal(got, want) || !d.Done() {
						t.Fatalf("%s: got %x want %x (done %v)", name, got, want, d.Done())
					}
					// At most: the IV block, the first and last blocks, one block per border.
					if limit := BlockSize * (3 + len(dst) - 1); stashed > limit {
						t.Fatalf("%s: %d bytes went through the stash, want at most %d", name, stashed, limit)
					}
				}
			}
		}
	}
}

// TestRangeDecrypterInPlace: an aligned range into one buffer takes its ciphertext straight into the
// buffer; only the IV block goes through the stash.
func TestRangeDecrypterInPlace(t *testing.T) { forEachPath(t, testRangeDecrypterInPlace) }

func testRangeDecrypterInPlace(t *testing.T) {
	key, iv := NewKey(), NewIV()
	plain := pseudoRandom(1, 1<<16)
	ct := reference(t, key, iv, plain)
	dst := make([]byte, 1<<15)
	d, err := NewRangeDecrypter(key, 1<<16, 1<<14, [][]byte{dst})
	if err != nil {
		t.Fatal(err)
	}
	cs, ce := CipherRange(1<<14, 1<<15, 1<<16)
	stashed, err := feed(d, bytes.Clone(ct[cs:ce]), []int{1000})
	if err != nil {
		t.Fatal(err)
	}
	if stashed != BlockSize || !bytes.Equal(dst, plain[1<<14:3<<14]) {
		t.Fatalf("%d bytes stashed, equal %v", stashed, bytes.Equal(dst, plain[1<<14:3<<14]))
	}
}

// TestRangeDecrypterIncomplete: a range whose ciphertext stops short (a body cut and not resumed) is not
// Done, whatever the buffers hold.
func TestRangeDecrypterIncomplete(t *testing.T) { forEachPath(t, testRangeDecrypterIncomplete) }

func testRangeDecrypterIncomplete(t *testing.T) {
	key, iv := NewKey(), NewIV()
	plain := pseudoRandom(2, 1000)
	ct := reference(t, key, iv, plain)
	for _, short := range []int{1, 15, 16, 17, 500} {
		d, _ := NewRangeDecrypter(key, 1000, 100, [][]byte{make([]byte, 900)})
		cs, ce := CipherRange(100, 900, 1000)
		if _, err := feed(d, bytes.Clone(ct[cs:ce-int64(short)]), []int{64}); err == nil {
			t.Fatalf("%d bytes short: fed without complaint", short)
		}
		if d.Done() || d.Remaining() != int64(short) {
			t.Fatalf("%d bytes short: Done %v, Remaining %d", short, d.Done(), d.Remaining())
		}
	}
}

func TestRangeDecrypterRejects(t *testing.T) { forEachPath(t, testRangeDecrypterRejects) }

func testRangeDecrypterRejects(t *testing.T) {
	key, iv := NewKey(), NewIV()
	plain := pseudoRandom(3, 50)
	ct := reference(t, key, iv, plain)
	one := func(n int) [][]byte { return [][]byte{make([]byte, n)} }

	d, _ := NewRangeDecrypter(key, 50, 0, one(10))
	if _, err := feed(d, bytes.Clone(ct[:16]), []int{16}); !errors.Is(err, ErrNoIV) {
		t.Fatalf("no IV, stashed block: %v", err)
	}
	d, _ = NewRangeDecrypter(key, 50, 0, one(48))
	if _, err := feed(d, bytes.Clone(ct[:48]), []int{48}); !errors.Is(err, ErrNoIV) {
		t.Fatalf("no IV, in place: %v", err)
	}
	d, _ = NewRangeDecrypter(NewKey(), 50, 40, one(10)) // wrong key: the padding of the last block is wrong
	if _, err := feed(d, bytes.Clone(ct[16:64]), []int{64}); !errors.Is(err, ErrPadding) {
		t.Fatalf("wrong key: %v", err)
	}
	d, _ = NewRangeDecrypter(key, 50, 20, one(5))
	if err := d.Advance(33); err == nil {
		t.Fatal("more ciphertext than the range: no error")
	}
	d, _ = NewRangeDecrypter(key, 50, 20, one(5))
	d.Next()
	if err := d.Advance(17); err == nil {
		t.Fatal("advance past what Next gave: no error")
	}
	for _, r := range [][2]int64{{-1, 5}, {50, 1}, {45, 6}, {0, 0}} {
		if _, err := NewRangeDecrypter(key, 50, r[0], one(int(r[1]))); err == nil {
			t.Fatalf("range %v of 50 bytes: no error", r)
		}
	}
	// Only AES-256 keys, although the key schedule would take AES-128 and AES-192 ones.
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := NewRangeDecrypter(make([]byte, n), 50, 20, one(5)); err == nil {
			t.Fatalf("%d-byte key: no error", n)
		}
	}
}

// BenchmarkRangeDecrypter: 16 MiB decrypted in place as two 8 MiB buffers, the ciphertext arriving in
// pieces of the given size (what one read of the body returns).
//
//	go test -run '^$' -bench RangeDecrypter -count 6 ./remote/cbc/
func BenchmarkRangeDecrypter(b *testing.B) {
	key, iv := NewKey(), NewIV()
	const size = 16 << 20
	ct := reference(b, key, iv, make([]byte, size+100))
	cs, ce := CipherRange(16, size, size+100)
	dst := [][]byte{make([]byte, size/2), make([]byte, size/2)}
	for _, piece := range []int{4 << 10, 32 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("piece-%dKiB", piece>>10), func(b *testing.B) {
			b.SetBytes(size)
			b.ReportAllocs()
			cpu0 := cpuTime()
			for b.Loop() {
				d, err := NewRangeDecrypter(key, size+100, 16, dst)
				if err != nil {
					b.Fatal(err)
				}
				in := ct[cs:ce]
				for len(in) > 0 {
					p := d.Next()
					k := copy(p[:min(len(p), piece)], in)
					if err := d.Advance(k); err != nil {
						b.Fatal(err)
					}
					in = in[k:]
				}
			}
			// CPU time rather than wall time: the machine is shared.
			b.ReportMetric((cpuTime()-cpu0).Seconds()/(float64(b.N)*size/(1<<30)), "cpu-s/GiB")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
