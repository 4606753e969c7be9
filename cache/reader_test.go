package cache

import (
	"context"
	"testing"
)

func TestReorderedReadsStaySequential(t *testing.T) {
	src := newFake()
	obj := src.add("obj", 100*testBS)
	c := newTestCache(t, src, testOptions(t))
	r := c.NewReader(obj, "")
	p := make([]byte, 32<<10)
	for _, off := range []int64{0, 32 << 10, 96 << 10, 64 << 10, 128 << 10} {
		if _, err := r.ReadAt(context.Background(), p, off); err != nil {
			t.Fatal(err)
		}
		if r.Window() == 0 {
			t.Fatalf("read at %d: reordered read reset the window", off)
		}
	}
	if _, err := r.ReadAt(context.Background(), p, 50*testBS); err != nil {
		t.Fatal(err)
	}
	if r.Window() != 0 {
		t.Fatal("seek did not reset the window")
	}
	settle(c)
}
