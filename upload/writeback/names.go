package writeback

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Kind says whether a name is one programs use for temporary files.
type Kind uint8

const (
	// Plain: published under its name once closed and settled.
	Plain Kind = iota
	// TemporaryName: certainly a program's temporary file (an editor's swap file, a backup name~, a
	// lock): never published under this name; renamed to a plain name, it is.
	TemporaryName
	// MaybeTemporary: the shape of rsync's temporary names (.name.XXXXXX), which ordinary dotfiles
	// such as .case.config or .env.backup also have. Held while a rename can still come, then
	// published under its own name.
	MaybeTemporary
)

var (
	rsyncTemp = regexp.MustCompile(`^\..+\.[A-Za-z0-9]{6}$`)
	swapFile  = regexp.MustCompile(`^\..*\.sw[a-px]$`)
)

// Temporary classifies a name: vim's .name.swp (and .swo, ..., .swx) and its 4913 probe, backups
// name~, Emacs locks .#name, GNOME's .goutputstream-XXXXXX and LibreOffice's .~lock.name# are
// temporary; rsync's .name.XXXXXX may be.
func Temporary(name string) Kind {
	switch {
	case name == "4913", strings.HasSuffix(name, "~"), strings.HasPrefix(name, ".#"),
		strings.HasPrefix(name, ".goutputstream-"), strings.HasPrefix(name, ".~lock."):
		return TemporaryName
	case !strings.HasPrefix(name, "."):
		return Plain
	case swapFile.MatchString(name):
		return TemporaryName
	case rsyncTemp.MatchString(name):
		return MaybeTemporary
	}
	return Plain
}

// ErrBadName: a name the platform cannot store as it is.
var ErrBadName = errors.New("the platform cannot store a name with a control character (newline, tab, ...)")

// CheckName refuses names the platform would store differently or refuse: control characters (a
// newline comes back as %0A, other control characters get a 400). Such a file is refused when it is
// created or renamed, rather than published under another name or retried for ever.
func CheckName(name string) error {
	if strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return fmt.Errorf("%q: %w", name, ErrBadName)
	}
	return nil
}
