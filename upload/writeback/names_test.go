package writeback

import "testing"

// TestTemporary: which names wait for a rename (not Plain), and which of those are only held for a
// while (MaybeTemporary: rsync's shape, which ordinary dotfiles share).
func TestTemporary(t *testing.T) {
	for name, want := range map[string]bool{
		"results.csv": false, ".bashrc": false, "model.inp": false, "a~b": false, "4914": false,
		".results.csv.Ab12Cd": true, // rsync
		".notes.txt.swp":      true, ".notes.txt.swo": true, ".swp": false, "notes.txt~": true, ".#notes.txt": true,
		"4913": true, ".goutputstream-ABC123": true, ".~lock.report.odt#": true,
	} {
		if got := Temporary(name) != Plain; got != want {
			t.Errorf("Temporary(%q) = %v, want temporary %v", name, Temporary(name), want)
		}
	}
	for name, want := range map[string]Kind{
		".case.config": MaybeTemporary, ".env.backup": MaybeTemporary, ".results.csv.Ab12Cd": MaybeTemporary,
		".notes.txt.swp": TemporaryName, "notes.txt~": TemporaryName, ".bashrc": Plain,
	} {
		if got := Temporary(name); got != want {
			t.Errorf("Temporary(%q) = %v, want %v", name, got, want)
		}
	}
}
