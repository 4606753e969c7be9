package cache

// Reclaim removes least recently used blocks of the disk tier until at least n bytes are freed (or the
// tier is empty) and returns the bytes freed (files it could not delete free nothing). It is how a write that must not fail (a file being staged
// for upload on the same disk) takes room from the cache: cached blocks can always be fetched again.
func (c *Cache) Reclaim(n int64) int64 {
	if c.disk == nil {
		return 0
	}
	return c.disk.reclaim(n)
}

func (d *diskTier) reclaim(n int64) int64 {
	d.life.RLock() // close waits for these deletions (see the lock order in disk.go)
	defer d.life.RUnlock()
	// The files the tier failed to delete before come first (they are room too, once deleted). Only
	// bytes actually freed count: the writer retries its write only if some were, and a file whose
	// unlink fails frees nothing, so the next least recently used blocks are taken instead.
	var freed int64
	for first := true; freed < n; first = false {
		d.mu.Lock()
		var victims []doomed
		var taking int64
		if first {
			victims = d.takeStuckLocked(true)
			for _, v := range victims {
				taking += v.size
			}
		}
		for freed+taking < n && d.lru.Len() > 0 {
			v := d.takeLocked(d.lru.Back())
			taking += v.size
			victims = append(victims, v)
		}
		d.mu.Unlock()
		if len(victims) == 0 {
			break
		}
		freed += d.deleteFiles(victims) // outside mu: a get of a block taken out is a miss
	}
	return freed
}
