package fs

import "testing"

func TestHiddenTemp(t *testing.T) {
	for name, want := range map[string]bool{
		"results.csv": false, ".bashrc": false, "model.inp": false, "a~b": false, "4914": false,
		".results.csv.Ab12Cd": true, // rsync
		".notes.txt.swp":      true, ".notes.txt.swo": true, ".swp": false, "notes.txt~": true, ".#notes.txt": true,
		"4913": true, ".goutputstream-ABC123": true, ".~lock.report.odt#": true,
	} {
		if got := hiddenTemp(name); got != want {
			t.Errorf("hiddenTemp(%q) = %v, want %v", name, got, want)
		}
	}
}
