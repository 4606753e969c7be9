package fs

// UploadTimers counts uploads/ files with a timer running, for the shutdown tests.
func (m *Mounted) UploadTimers() int { return m.fsys.io.up.set.Armed() }

// UploadAwaited says whether the engine's confirmation of upload id is still to be booked.
func (m *Mounted) UploadAwaited(id string) bool { return m.fsys.io.up.set.Tracks(id) }
