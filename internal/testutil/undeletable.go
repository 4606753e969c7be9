package testutil

import (
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Undeletable makes the files in dir impossible to unlink, for real, until undo (which also runs in
// cleanup, before t.TempDir's removal): the directory is made immutable (chattr +i: unlink and create
// fail with EPERM, for root too; the files' contents stay writable), or where the filesystem or the
// capabilities do not allow that, dir is bound read-only over itself (EROFS).
func Undeletable(t testing.TB, dir string) (undo func()) {
	t.Helper()
	var once sync.Once
	undo = func() {}
	if err := setImmutable(dir, true); err == nil {
		undo = func() {
			once.Do(func() {
				if err := setImmutable(dir, false); err != nil {
					t.Errorf("chattr -i %s: %v", dir, err)
				}
			})
		}
	} else if err2 := bindReadOnly(dir); err2 == nil {
		undo = func() {
			once.Do(func() {
				if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
					t.Errorf("unmount %s: %v", dir, err)
				}
			})
		}
	} else {
		t.Fatalf("cannot make the files of %s undeletable: chattr +i: %v; read-only bind mount: %v (the test needs root)", dir, err, err2)
	}
	t.Cleanup(undo)
	return undo
}

// fsImmutableFL is FS_IMMUTABLE_FL of linux/fs.h (chattr's i), which x/sys/unix does not name.
const fsImmutableFL = 0x10

func setImmutable(dir string, on bool) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err != nil {
		return err
	}
	if on {
		flags |= fsImmutableFL
	} else {
		flags &^= fsImmutableFL
	}
	return unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags))
}

func bindReadOnly(dir string) error {
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		return err
	}
	return nil
}
