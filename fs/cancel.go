package fs

// Cancel is the tree's part of the first step of the owner's shutdown order (cancel, wait, close):
// the platform calls its folders share (listings, statuses, the poller's round) return now, even
// while the mount still serves files a program holds open after a lazy unmount. Unmount does it too.
func (m *Mounted) Cancel() { m.fsys.cancel() }
