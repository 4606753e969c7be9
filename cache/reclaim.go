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
	d.life.RLock() // close waits for these deletions (see the lock order in disk.go)
	defer d.life.RUnlock()
	var freed int64
	var victims []doomed
	d.mu.Lock()
	for freed < n && d.lru.Len() > 0 {
		v := d.takeLocked(d.lru.Back())
		freed += v.size
		victims = append(victims, v)
	}
	d.mu.Unlock()
	d.deleteFiles(victims) // outside mu: a get of a block taken out is a miss
	return freed
}
