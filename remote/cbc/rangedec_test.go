package cbc

import (
	"bytes"
	"errors"
	"testing"
)

// TestRangeDecrypterEveryRange: every range of small files, its ciphertext fed in pieces of every
// length from 1 byte up, decrypts to the plaintext, as DecryptRange does.
func TestRangeDecrypterEveryRange(t *testing.T) {
	key, iv := NewKey(), NewIV()
	for _, size := range []int{1, 15, 16, 17, 33, 48, 50} {
		plain := pseudoRandom(uint64(size), size)
		ct := reference(t, key, iv, plain)
		for off := 0; off < size; off++ {
			for n := 1; off+n <= size+20; n++ {
				for _, piece := range []int{1, 7, 16, 17, 1 << 20} {
					s, e := CipherRange(int64(off), int64(n), int64(size))
					d, err := NewRangeDecrypter(key, int64(size), int64(off), int64(n))
					if err != nil {
						t.Fatal(err)
					}
					if d.NeedsIV() != (off < BlockSize) {
						t.Fatalf("size %d [%d,+%d): NeedsIV %v", size, off, n, d.NeedsIV())
					}
					if d.NeedsIV() {
						d.SetIV(iv)
					}
					var got []byte
					in := bytes.Clone(ct[s:e])
					for len(in) > 0 {
						k := min(piece, len(in))
						if err := d.Write(in[:k], func(p []byte) { got = append(got, p...) }); err != nil {
							t.Fatalf("size %d [%d,+%d) piece %d: %v", size, off, n, piece, err)
						}
						in = in[k:]
					}
					if want := plain[off:min(off+n, size)]; !bytes.Equal(got, want) || !d.Done() {
						t.Fatalf("size %d [%d,+%d) piece %d: got %x want %x (done %v)", size, off, n, piece, got, want, d.Done())
					}
				}
			}
		}
	}
}

func TestRangeDecrypterRejects(t *testing.T) {
	key, iv := NewKey(), NewIV()
	plain := pseudoRandom(3, 50)
	ct := reference(t, key, iv, plain)
	emit := func([]byte) {}

	d, _ := NewRangeDecrypter(key, 50, 0, 10)
	if err := d.Write(bytes.Clone(ct[:16]), emit); !errors.Is(err, ErrNoIV) {
		t.Fatalf("no IV: %v", err)
	}
	d, _ = NewRangeDecrypter(NewKey(), 50, 40, 10) // wrong key: the padding of the last block is wrong
	if err := d.Write(bytes.Clone(ct[16:64]), emit); !errors.Is(err, ErrPadding) {
		t.Fatalf("wrong key: %v", err)
	}
	d, _ = NewRangeDecrypter(key, 50, 20, 5)
	if err := d.Write(bytes.Clone(ct[0:48]), emit); err == nil {
		t.Fatal("more ciphertext than the range: no error")
	}
}
