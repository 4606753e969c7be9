package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// The kernel sends a handle's reads concurrently, so a sequential stream's reads arrive out of order;
// that must not reset the read-ahead window, while a seek does.
func TestReorderedReadsStaySequential(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name string
		size int64   // of each read
		offs []int64 // in order of arrival
	}{
		{"small reads", 32 << 10, []int64{0, 32 << 10, 96 << 10, 64 << 10, 128 << 10}},
		// Seen from a cold cp: the read at 2 MiB arrived after the one at 3 MiB.
		{"kernel's 1 MiB reads", mib, []int64{0, mib, 3 * mib, 2 * mib, 4 * mib, 5 * mib}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := newFake()
			obj := src.add("obj", 100*mib)
			c := newTestCache(t, src, testOptions(t))
			r := c.NewReader(obj, "")
			p := make([]byte, tc.size)
			for _, off := range tc.offs {
				if _, err := r.ReadAt(context.Background(), p, off); err != nil {
					t.Fatal(err)
				}
				if r.Window() == 0 {
					t.Fatalf("read at %d: reordered read reset the window", off)
				}
			}
			if _, err := r.ReadAt(context.Background(), p, 50*mib); err != nil {
				t.Fatal(err)
			}
			if r.Window() != 0 {
				t.Fatal("seek did not reset the window")
			}
			settle(c)
		})
	}
}

// TestReadRefSharesBlocks: a read inside one block is answered with the cached block's own bytes (no
// copy into p), a read across blocks with p, and both with the object's bytes.
func TestReadRefSharesBlocks(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 3*testBS+100)
	c := newTestCache(t, src, testOptions(t))
	r := c.NewReader(obj, "")
	want := src.objects["obj"]
	tests := []struct {
		off, n int64
		inP    bool
	}{
		{0, 4096, false},            // first read of block 0
		{4096, 4096, false},         // the reader's current block
		{testBS - 100, 200, true},   // across blocks 0 and 1
		{3 * testBS, 4096, false},   // the short last block, to EOF
		{2*testBS + 8, 1024, false}, // a block fetched by an earlier read
	}
	for _, tt := range tests {
		p := make([]byte, tt.n)
		b, err := r.ReadRef(context.Background(), p, tt.off)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatal(err)
		}
		end := min(tt.off+tt.n, obj.Size)
		if !bytes.Equal(b, want[tt.off:end]) {
			t.Fatalf("read [%d,%d): wrong bytes", tt.off, end)
		}
		if inP := len(b) > 0 && &b[0] == &p[0]; inP != tt.inP {
			t.Fatalf("read [%d,%d): answered from p %v, want %v", tt.off, end, inP, tt.inP)
		}
	}
	settle(c)
}
