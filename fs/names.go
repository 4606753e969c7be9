package fs

import (
	"strings"

	"github.com/rescalefs/rescalefs/internal/names"
)

// Names from the API are untrusted. The mount rewrites unsafe ones into safe look-alikes,
// deterministically, so the same listing always gives the same tree (inode numbers and paths stay
// stable across mounts): the rules are internal/names' (SplitRelPath, Sanitize, WithSuffix, ValidID),
// shared with the background download, which refuses such names instead.

// validJobID says whether s can be a Rescale job id. Anything else is never sent to the platform, so a
// lookup of "..", "@x" or a long name in jobs/ fails locally.
func validJobID(s string) bool { return names.ValidID(s) }

// byNameEntry is the name of a job's by-name/ symlink: "<job name> (<id>)". The job name is
// sanitised and shortened so the whole fits in names.MaxLen; the id keeps entries unique.
func byNameEntry(name, id string) string {
	tail := " (" + id + ")"
	if strings.TrimSpace(name) == "" {
		name = "unnamed"
	}
	name = names.ReplaceSpecial(name)
	if len(name)+len(tail) > names.MaxLen {
		name = names.Shorten(name, names.MaxLen-len(tail))
	}
	return name + tail
}
