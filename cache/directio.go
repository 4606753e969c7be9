package cache

import (
	"errors"
	"io"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// alignedBuf returns a zeroed buffer of n bytes whose first byte is page aligned, as O_DIRECT wants.
// Go allocates large objects at page boundaries, so the first try nearly always fits; otherwise a
// larger buffer is sliced (its capacity capped at n, so nobody appends into the slack).
func alignedBuf(n int) []byte {
	b := make([]byte, n)
	if aligned(b) {
		return b
	}
	b = make([]byte, n+diskPage)
	off := int((diskPage - uintptr(unsafe.Pointer(unsafe.SliceData(b)))%diskPage) % diskPage)
	return b[off : off+n : off+n]
}

func aligned(b []byte) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%diskPage == 0
}

// openDirect opens path with O_DIRECT when the filesystem allows it (tmpfs does not: EINVAL), else
// without. direct reports which.
func openDirect(path string, flag int, perm os.FileMode) (f *os.File, direct bool, err error) {
	f, err = os.OpenFile(path, flag|syscall.O_DIRECT, perm)
	if err == nil {
		return f, true, nil
	}
	if !errors.Is(err, syscall.EINVAL) {
		return nil, false, err
	}
	f, err = os.OpenFile(path, flag, perm)
	return f, false, err
}

// writePages writes hdr (one page) and then payload zero-padded to a whole page, at offset 0 of f. With
// O_DIRECT every buffer must be page aligned and a whole number of pages: an aligned payload is written
// from where it is, only its partial last page (and an unaligned payload, which is a compressed copy) is
// copied.
func writePages(f *os.File, hdr, payload []byte) error {
	bufs := [][]byte{hdr}
	whole := len(payload) &^ (diskPage - 1)
	if aligned(payload) {
		if whole > 0 {
			bufs = append(bufs, payload[:whole])
		}
		if tail := payload[whole:]; len(tail) > 0 {
			t := alignedBuf(diskPage)
			copy(t, tail)
			bufs = append(bufs, t)
		}
	} else if len(payload) > 0 {
		t := alignedBuf(int(roundPage(int64(len(payload)))))
		copy(t, payload)
		bufs = append(bufs, t)
	}
	var off int64
	for _, b := range bufs {
		n, err := unix.Pwrite(int(f.Fd()), b, off)
		if err != nil {
			return &os.PathError{Op: "write", Path: f.Name(), Err: err}
		}
		if n != len(b) {
			return &os.PathError{Op: "write", Path: f.Name(), Err: io.ErrShortWrite}
		}
		off += int64(n)
	}
	return nil
}

// readPages reads from offset 0 of f into hdr and then into body (both page aligned, whole pages) with
// one preadv, as far as the file goes. It returns the bytes read.
func readPages(f *os.File, hdr, body []byte) (int, error) {
	total := 0
	iov := [][]byte{hdr, body}
	for len(iov) > 0 {
		n, err := unix.Preadv(int(f.Fd()), iov, int64(total))
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return total, &os.PathError{Op: "read", Path: f.Name(), Err: err}
		}
		if n == 0 {
			return total, nil // end of file
		}
		total += n
		for n > 0 && len(iov) > 0 {
			if n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
			} else {
				iov[0] = iov[0][n:]
				n = 0
			}
		}
	}
	return total, nil
}
