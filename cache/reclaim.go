package cache

// Reclaim removes least recently used blocks of the disk tier until at least n bytes are freed (or the
// tier is empty) and returns the bytes freed. It is how a write that must not fail (a file being staged
// for upload on the same disk) takes room from the cache: cached blocks can always be fetched again.
func (c *Cache) Reclaim(n int64) int64 {
	if c.disk == nil {
		return 0
	}
	return c.disk.reclaim(n)
}

func (d *diskTier) reclaim(n int64) int64 {
	var freed int64
	var paths []string
	d.mu.Lock()
	for freed < n && d.lru.Len() > 0 {
		de := d.dropLocked(d.lru.Back())
		freed += de.size
		paths = append(paths, d.path(de.key))
	}
	d.mu.Unlock()
	for _, p := range paths { // outside the lock: a get of a removed block is a miss
		d.unlink(p)
	}
	return freed
}
