package upload

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// stage writes a staging file with data and, unless r is nil, its record.
func stage(t *testing.T, eng *Engine, data []byte, r *StagingRecord) string {
	t.Helper()
	f, err := eng.CreateStaging()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if r != nil {
		if err := eng.RecordStaging(f.Name(), *r); err != nil {
			t.Fatal(err)
		}
	}
	return f.Name()
}

// TestStagingAccountedForOnStart: every staging file a crash left is accounted for by the next New:
// listed with its record (complete only when closed at the size it has), moved to damaged/ when it
// cannot be trusted, removed only when it holds nothing (a creation that never returned, a record
// whose data was already enqueued, a torn record write).
func TestStagingAccountedForOnStart(t *testing.T) {
	p := newPlatform(t, false)
	dir := t.TempDir()
	o := p.engineOpts(dir)
	eng, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	closed := stage(t, eng, []byte("closed by its writer"), &StagingRecord{Path: "a/closed.txt", Closed: true, Size: 20, Replaces: "0011"})
	open := stage(t, eng, []byte("cut off mid-wr"), &StagingRecord{Path: "open.txt"})
	grown := stage(t, eng, []byte("closed, then written again"), &StagingRecord{Path: "grown.txt", Closed: true, Size: 6})
	hidden := stage(t, eng, []byte("rsync temp"), &StagingRecord{Path: ".data.bin.Ab12Cd", Closed: true, Size: 10})
	orphan := stage(t, eng, []byte("no record"), nil)
	empty := stage(t, eng, nil, nil)
	bad := stage(t, eng, []byte("bad record"), nil)
	if err := os.WriteFile(bad+stagingExt, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	escape := stage(t, eng, []byte("escaping path"), nil)
	if err := os.WriteFile(escape+stagingExt, []byte(`{"v":1,"path":"../x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(eng.StagingDir(), "w-gone"+stagingExt)
	if err := os.WriteFile(stray, []byte(`{"v":1,"path":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	torn := open + stagingExt + ".tmp"
	if err := os.WriteFile(torn, []byte(`{"v":1,"pa`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Enqueue takes the record with the data.
	queued := stage(t, eng, []byte("queued"), &StagingRecord{Path: "queued.txt", Closed: true, Size: 6})
	if _, err := eng.Enqueue(queued, "queued.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(queued + stagingExt); !os.IsNotExist(err) {
		t.Fatalf("Enqueue left the staging record: %v", err)
	}
	eng.Close()

	eng2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	got := map[string]Staged{}
	for _, s := range eng2.TakeStaged() {
		got[s.Path] = s
	}
	if len(eng2.TakeStaged()) != 0 {
		t.Error("TakeStaged returned the files twice")
	}
	want := map[string]bool{closed: true, open: false, grown: false, hidden: true}
	if len(got) != len(want) {
		t.Errorf("staged %d files, want %d: %v", len(got), len(want), got)
	}
	for path, complete := range want {
		s, ok := got[path]
		switch {
		case !ok:
			t.Errorf("%s not listed", path)
		case s.Complete() != complete:
			t.Errorf("%s (%s): complete %v, want %v", path, s.Record.Path, s.Complete(), complete)
		}
	}
	if s := got[closed]; s.Name() != "closed.txt" || s.Record.Replaces != "0011" || s.Size != 20 {
		t.Errorf("closed: %+v", s)
	}
	for _, p := range []string{empty, stray, torn, orphan, bad, escape} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s still in staging: %v", filepath.Base(p), err)
		}
	}
	// Data that cannot be trusted is kept aside with a reason, and reported.
	var damaged []string
	for _, s := range eng2.Snapshot() {
		if s.State == StateDamaged {
			damaged = append(damaged, s.ID)
			data, err := os.ReadFile(s.Path)
			if err != nil || len(data) == 0 {
				t.Errorf("damaged %s: data %q, %v", s.ID, data, err)
			}
			reason, err := os.ReadFile(filepath.Join(dir, "damaged", s.ID+".reason"))
			if err != nil || !strings.Contains(string(reason), "staging") {
				t.Errorf("damaged %s: reason %q, %v", s.ID, reason, err)
			}
		}
	}
	slices.Sort(damaged)
	wantDamaged := []string{filepath.Base(orphan), filepath.Base(bad), filepath.Base(escape)}
	slices.Sort(wantDamaged)
	if !slices.Equal(damaged, wantDamaged) {
		t.Errorf("damaged %v, want %v", damaged, wantDamaged)
	}
	if eng2.Pending() != 1 {
		t.Errorf("Pending %d, want the one enqueued", eng2.Pending())
	}
}

// TestRecordStagingChecks: records only for staging files, with a relative path inside uploads/.
func TestRecordStagingChecks(t *testing.T) {
	p := newPlatform(t, false)
	eng, err := New(p.engineOpts(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	f := stage(t, eng, []byte("x"), nil)
	for _, bad := range []string{"", "/abs", "../up", "a/../b", "a//b", "."} {
		if err := eng.RecordStaging(f, StagingRecord{Path: bad}); err == nil {
			t.Errorf("path %q accepted", bad)
		}
	}
	if err := eng.RecordStaging(filepath.Join(t.TempDir(), "w-1"), StagingRecord{Path: "x"}); err == nil {
		t.Error("a file outside staging/ accepted")
	}
	if err := eng.DiscardStaging(f); err != nil {
		t.Fatal(err)
	}
}
