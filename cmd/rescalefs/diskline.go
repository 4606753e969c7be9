package main

import (
	"fmt"
	"strings"

	"github.com/rescalefs/rescalefs/cache"
	"github.com/rescalefs/rescalefs/internal/units"
)

// diskLine says why the disk cache holds room it cannot free or stopped storing blocks: files it failed
// to delete (an immutable or read-only folder: their room stays used, so new blocks may not fit) and
// blocks it did not store (a failed write, or no room beside those files). "" when neither happened;
// the log says the cause and the folder, once.
func diskLine(c *cache.Stats) string {
	if c == nil || c.DiskStuckFiles == 0 && c.DiskErrors == 0 {
		return ""
	}
	var parts []string
	if c.DiskStuckFiles > 0 {
		parts = append(parts, fmt.Sprintf("%d files (%s) it cannot delete keep their room used (a read-only or immutable folder? see the log)",
			c.DiskStuckFiles, units.Human(c.DiskStuckBytes)))
	}
	if c.DiskErrors > 0 {
		parts = append(parts, fmt.Sprintf("%d blocks not stored on disk (served uncached)", c.DiskErrors))
	}
	return "disk cache: " + strings.Join(parts, "; ")
}
