package cache

// Prefetch starts fetching the whole of obj in the background, as read-ahead: blocks that a tier holds
// or a fetch covers are skipped, the rest are fetched in requests of up to MaxRequestSize (an object
// of one block: one request), within the Parallel slots, and wait in memory for their reader within
// the same budget as sequential read-ahead. It returns at once. For reading ahead across files: a
// program walking a folder opens the next small files, one after the other. With read-ahead disabled
// (Options.Readahead negative) it does nothing.
func (c *Cache) Prefetch(obj Object) {
	if obj.Size <= 0 || c.opts.Readahead < 0 {
		return
	}
	c.readahead(obj, 0, c.numBlocks(obj.Size), c.maxReqBlk, nil, 0)
}

// PrefetchBudget is the memory that fetches in flight and read-ahead (Prefetch's included) not yet
// read share: past it the oldest unread read-ahead is dropped. A caller prefetching more than about
// half of it would see its own prefetches dropped before they are read.
func (c *Cache) PrefetchBudget() int64 { return c.fetchBudget }
