// Package writeback is the life of a file written into uploads/, without FUSE: from its first write to
// its publication (or its removal), as one state per file and one table of transitions. The fs layer
// turns syscalls into the events of this table (a write, a close, a rename, an unlink) and the upload
// engine's outcomes into the others; nothing else decides when a file is published.
//
// The rule the table keeps: a file is handed to the engine only from Settling, which means "the writer
// closed it, every write succeeded, and it has not changed since" (and its name is not a temporary one).
package writeback

import "fmt"

// State is where a file of uploads/ stands.
type State uint8

const (
	// Writing: open for writing, or changed since it was last closed.
	Writing State = iota + 1
	// Settling: closed by its writer, every write succeeded, unchanged since; queued once left alone
	// for the settle time (cp and editors close and reopen; rsync renames at the end).
	Settling
	// Held: closed under a temporary name (rsync's .name.XXXXXX, an editor's swap file): held while
	// a rename can still come, published under its own name once that time is over.
	Held
	// Queued: handed to the engine, which journals it and sends it (its own status says whether it
	// is waiting, sending or retrying).
	Queued
	// Published: the platform confirmed it; it leaves uploads/ and shows in files/.
	Published
	// WriteFailed: a write failed (a full disk): never published as it is. Emptying it (a rewrite: cp
	// over it, an O_TRUNC open) makes it Writing again.
	WriteFailed
	// CutOff: the mount stopped while it was being written. Shown back, not published until written
	// or closed again by the user.
	CutOff
	// Cancelled: unlinked or replaced by a rename; its upload, if any, is aborted in the background.
	Cancelled
	// Rejected: the platform refused it with an answer that will not change on a retry (a name it
	// cannot store). Never retried; written again or renamed, it is a new version.
	Rejected
)

var stateNames = [...]string{Writing: "writing", Settling: "settling", Held: "held-for-rename",
	Queued: "queued", Published: "published", WriteFailed: "write-failed", CutOff: "cut-off",
	Cancelled: "cancelled", Rejected: "failed-permanently"}

func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// Terminal states: the file has left uploads/ (its data may still be open through a handle).
func (s State) Terminal() bool { return s == Published || s == Cancelled }

// Event is what happens to a file.
type Event uint8

const (
	EvWrite       Event = iota + 1 // a write or truncate succeeded
	EvWriteFailed                  // a write or truncate failed: bytes are missing
	EvRewrite                      // truncated to nothing: written again from the start
	EvClose                        // the last writer closed it, under a plain name
	EvCloseTemp                    // the last writer closed it, under a temporary name
	EvRenamePlain                  // renamed to a plain name
	EvRenameTemp                   // renamed to a temporary name
	EvEnqueue                      // the engine took it (journaled)
	EvHoldOver                     // a temporary name was left alone long enough: no rename is coming
	EvPublish                      // the platform confirmed it under its current name
	EvReject                       // the platform refused it for good
	EvRemove                       // unlinked, or replaced by a rename
)

var eventNames = [...]string{EvWrite: "write", EvWriteFailed: "write-failed", EvRewrite: "rewrite",
	EvClose: "close", EvCloseTemp: "close-temp", EvRenamePlain: "rename-plain", EvRenameTemp: "rename-temp",
	EvEnqueue: "enqueue", EvHoldOver: "hold-over", EvPublish: "publish",
	EvReject: "reject", EvRemove: "remove"}

func (e Event) String() string {
	if int(e) < len(eventNames) && eventNames[e] != "" {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", e)
}

// States and Events list every value, for tests and documentation.
var (
	States = []State{Writing, Settling, Held, Queued, Published, WriteFailed, CutOff, Cancelled, Rejected}
	Events = []Event{EvWrite, EvWriteFailed, EvRewrite, EvClose, EvCloseTemp, EvRenamePlain, EvRenameTemp,
		EvEnqueue, EvHoldOver, EvPublish, EvReject, EvRemove}
)

// table is every transition there is. A pair missing from it is refused (Next returns an error): the
// caller keeps the state it had.
var table = map[State]map[Event]State{
	Writing: {
		EvWrite: Writing, EvWriteFailed: WriteFailed, EvRewrite: Writing,
		EvClose: Settling, EvCloseTemp: Held,
		EvRenamePlain: Writing, EvRenameTemp: Writing,
		EvRemove: Cancelled,
	},
	Settling: {
		EvWrite: Writing, EvWriteFailed: WriteFailed, EvRewrite: Writing,
		EvClose: Settling, EvCloseTemp: Held, // another close restarts the wait
		EvRenamePlain: Settling, EvRenameTemp: Held,
		EvEnqueue: Queued,
		EvRemove:  Cancelled,
	},
	Held: {
		EvWrite: Writing, EvWriteFailed: WriteFailed, EvRewrite: Writing,
		EvClose: Settling, EvCloseTemp: Held,
		EvRenamePlain: Settling, EvRenameTemp: Held,
		EvHoldOver: Settling,
		EvRemove:   Cancelled,
	},
	Queued: {
		// A write makes a new version (a copy of the queued data); the queued one is cancelled once
		// the new one is queued, or, published meanwhile, its publication is deleted once the new one
		// is published (the engine books it with the new version: upload/version.go).
		EvWrite: Writing, EvWriteFailed: WriteFailed, EvRewrite: Writing,
		EvClose: Queued, EvCloseTemp: Queued, // a close without a write changes nothing
		EvRenamePlain: Queued, // the engine publishes it under the new name
		EvRenameTemp:  Held,   // taken back from the engine
		// A confirmation under a name the file has left is no event: the engine publishes it again.
		EvPublish: Published, EvReject: Rejected,
		EvRemove: Cancelled,
	},
	WriteFailed: {
		EvWrite: WriteFailed, EvWriteFailed: WriteFailed, EvRewrite: Writing,
		EvClose: WriteFailed, EvCloseTemp: WriteFailed,
		EvRenamePlain: WriteFailed, EvRenameTemp: WriteFailed,
		EvRemove: Cancelled,
	},
	CutOff: {
		EvWrite: Writing, EvWriteFailed: WriteFailed, EvRewrite: Writing,
		EvClose: Settling, EvCloseTemp: Held, // the user's open and close takes it as it is
		EvRenamePlain: CutOff, EvRenameTemp: CutOff,
		EvRemove: Cancelled,
	},
	Rejected: {
		EvWrite: Writing, EvWriteFailed: WriteFailed, EvRewrite: Writing,
		EvClose: Rejected, EvCloseTemp: Rejected,
		EvRenamePlain: Settling, EvRenameTemp: Held, // another name may be accepted
		EvRemove: Cancelled,
	},
	// Published and Cancelled: nothing moves them. Bytes written through a handle still open go to
	// data nobody will publish.
	Published: {},
	Cancelled: {},
}

// ErrRefused is wrapped by the error of a transition the table does not have.
var ErrRefused = fmt.Errorf("writeback: transition refused")

// Next is the state after ev in state s, or an error wrapping ErrRefused.
func Next(s State, ev Event) (State, error) {
	if to, ok := table[s][ev]; ok {
		return to, nil
	}
	return s, fmt.Errorf("%w: %s in state %s", ErrRefused, ev, s)
}
