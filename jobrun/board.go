package jobrun

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Board keeps one live row per job at the bottom of a terminal, below the lines printed so far: what a
// matrix shows on a TTY. Without a TTY the waiters' plain lines are the whole story and no Board is used.
// It is an io.Writer: give it to NewPrinter, and every line goes above the rows.
type Board struct {
	mu    sync.Mutex // guards everything below
	w     io.Writer
	order []string          // job ids, in the order given
	rows  map[string]string // job id -> its row's text
	drawn int               // rows on screen now, to be cleared before the next write
	done  bool              // Close: the rows stay as they are, writes go below them
}

// NewBoard makes a board with one row per job id.
func NewBoard(w io.Writer, jobIDs []string) *Board {
	b := &Board{w: w, order: jobIDs, rows: map[string]string{}}
	for _, id := range jobIDs {
		b.rows[id] = "job " + id + ": submitted"
	}
	return b
}

// Set changes a job's row and redraws.
func (b *Board) Set(jobID, text string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done || b.rows[jobID] == text {
		return
	}
	b.rows[jobID] = text
	b.clearLocked()
	b.drawLocked()
}

// Write prints p above the rows.
func (b *Board) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return b.w.Write(p)
	}
	b.clearLocked()
	n, err := b.w.Write(p)
	b.drawLocked()
	return n, err
}

// Close leaves the rows on screen as they stand; later output goes below them.
func (b *Board) Close() {
	b.mu.Lock()
	b.drawn, b.done = 0, true
	b.mu.Unlock()
}

// clearLocked moves the cursor up over the rows and clears to the end of the screen.
func (b *Board) clearLocked() {
	if b.drawn > 0 {
		fmt.Fprintf(b.w, "\x1b[%dA\x1b[J", b.drawn)
		b.drawn = 0
	}
}

func (b *Board) drawLocked() {
	var s strings.Builder
	for _, id := range b.order {
		s.WriteString(b.rows[id])
		s.WriteString("\n")
	}
	io.WriteString(b.w, s.String())
	b.drawn = len(b.order)
}
