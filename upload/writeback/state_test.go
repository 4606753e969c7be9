package writeback

import (
	"errors"
	"strings"
	"testing"
)

// grid is the transition table written out by hand, one row per state, one column per event (in the
// order of Events): the state after the event, or "-" where the event is refused. TestTable checks
// Next against every cell, so a change of the table is a change of this grid too.
const grid = `
            write  wfail  rewrite close  closeT renP   renT   enq    hold   pub    reject remove
writing     W      WF     W      S      H      W      W      -      -      -      -      X
settling    W      WF     W      S      H      S      H      Q      -      -      -      X
held        W      WF     W      S      H      S      H      -      S      -      -      X
queued      W      WF     W      Q      Q      Q      H      -      -      P      R      X
published   -      -      -      -      -      -      -      -      -      -      -      -
writefail   WF     WF     W      WF     WF     WF     WF     -      -      -      -      X
cutoff      W      WF     W      S      H      CO     CO     -      -      -      -      X
cancelled   -      -      -      -      -      -      -      -      -      -      -      -
rejected    W      WF     W      R      R      S      H      -      -      -      -      X
`

var gridStates = map[string]State{"W": Writing, "S": Settling, "H": Held, "Q": Queued, "P": Published,
	"WF": WriteFailed, "CO": CutOff, "X": Cancelled, "R": Rejected}

func TestTable(t *testing.T) {
	rows := strings.Split(strings.TrimSpace(grid), "\n")[1:]
	if len(rows) != len(States) {
		t.Fatalf("grid has %d rows, want one per state (%d)", len(rows), len(States))
	}
	for i, row := range rows {
		cells := strings.Fields(row)[1:]
		if len(cells) != len(Events) {
			t.Fatalf("row %d has %d cells, want one per event (%d)", i, len(cells), len(Events))
		}
		from := States[i]
		for j, cell := range cells {
			ev := Events[j]
			got, err := Next(from, ev)
			if cell == "-" {
				if !errors.Is(err, ErrRefused) || got != from {
					t.Errorf("%s + %s = %s, %v; want refused, state kept", from, ev, got, err)
				}
				continue
			}
			want, ok := gridStates[cell]
			if !ok {
				t.Fatalf("grid cell %q", cell)
			}
			if err != nil || got != want {
				t.Errorf("%s + %s = %s, %v; want %s", from, ev, got, err, want)
			}
		}
	}
}

// TestTableRules: the properties the table exists for, checked over every path.
func TestTableRules(t *testing.T) {
	for _, s := range States {
		for _, ev := range Events {
			to, err := Next(s, ev)
			if err != nil {
				continue
			}
			// Only a settled file (closed, every write succeeded, unchanged since) is handed to the engine.
			if to == Queued && s != Queued && s != Settling {
				t.Errorf("%s + %s reaches queued", s, ev)
			}
			// Only the engine's confirmation publishes.
			if to == Published && ev != EvPublish {
				t.Errorf("%s + %s reaches published", s, ev)
			}
			// A failed write is left only by a rewrite or a removal.
			if s == WriteFailed && to != WriteFailed && ev != EvRewrite && ev != EvRemove {
				t.Errorf("write-failed + %s leaves to %s", ev, to)
			}
			// A cut-off file is published only after the user writes or closes it.
			if s == CutOff && to == Settling && ev != EvClose {
				t.Errorf("cut-off + %s settles", ev)
			}
			if s.Terminal() {
				t.Errorf("%s + %s moves a terminal state", s, ev)
			}
		}
	}
	for _, s := range States {
		if strings.HasPrefix(s.String(), "State(") {
			t.Errorf("state %d has no name", s)
		}
	}
	for _, ev := range Events {
		if strings.HasPrefix(ev.String(), "Event(") {
			t.Errorf("event %d has no name", ev)
		}
	}
}
