package cache

import (
	"github.com/dgraph-io/ristretto/v2"
)

// memTier is the memory tier: ristretto bounded by bytes (cost = block
// length). ristretto's Set is asynchronous and may drop or reject an item, so
// a Get right after a Set may miss: callers never rely on a Set being visible
// (read-ahead is held in Cache.ready, a reader keeps its current block).
// Values are never mutated after Set, so handing them out is safe.
type memTier struct {
	rc *ristretto.Cache[string, []byte]
}

func newMemTier(maxBytes, blockSize int64) (*memTier, error) {
	// ristretto wants ~10 counters per item it may hold; small files make
	// small blocks, so assume items of 64 KiB or the block size if smaller.
	unit := min(blockSize, 64<<10)
	counters := min(max(10*maxBytes/unit, 10_000), 10_000_000)
	rc, err := ristretto.NewCache(&ristretto.Config[string, []byte]{
		NumCounters:        counters,
		MaxCost:            maxBytes,
		BufferItems:        64,
		IgnoreInternalCost: true, // cost is block bytes; the bound is a byte budget
	})
	if err != nil {
		return nil, err
	}
	return &memTier{rc: rc}, nil
}

func (m *memTier) get(key string) ([]byte, bool) { return m.rc.Get(key) }

func (m *memTier) set(key string, data []byte) { m.rc.Set(key, data, int64(len(data))) }

// wait makes earlier sets visible (tests only need determinism).
func (m *memTier) wait() { m.rc.Wait() }

// used is the cost (bytes) currently held.
func (m *memTier) used() int64 { return m.rc.MaxCost() - m.rc.RemainingCost() }

func (m *memTier) close() { m.rc.Close() }
