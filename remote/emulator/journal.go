package emulator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// journalName is the state file in DataDir: one JSON record per line, replayed at start and compacted
// (rewritten from the replayed state) right after, so it stays proportional to the state, not to history.
const journalName = "state.jsonl"

// journal appends records to DataDir/state.jsonl. Writes are plain appends without fsync: the journal must
// survive a restart of the emulator process (the page cache keeps it), not a power cut.
// Emulator.mu serialises its use.
type journal struct {
	f *os.File
}

// loadJournal replays DataDir's journal into s and returns an open journal holding its compacted form.
// A torn last line (the process died mid-append) is dropped; damage elsewhere is an error.
func loadJournal(dir string, s *state) (*journal, error) {
	path := filepath.Join(dir, journalName)
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			if i == len(lines)-1 {
				break // torn final append
			}
			return nil, fmt.Errorf("emulator state %s line %d: %w", path, i+1, err)
		}
		s.apply(r)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriter(f)
	if err := writeRecords(bw, s.snapshot()); err != nil {
		f.Close()
		return nil, err
	}
	if err := errors.Join(bw.Flush(), f.Close(), os.Rename(tmp, path)); err != nil {
		return nil, err
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &journal{f: f}, nil
}

func writeRecords(w io.Writer, recs []record) error {
	enc := json.NewEncoder(w)
	for _, r := range recs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

// append writes recs in one write call, so a batch (a whole job with its files) lands together.
func (j *journal) append(recs ...record) error {
	if j == nil {
		return nil
	}
	var buf bytes.Buffer
	if err := writeRecords(&buf, recs); err != nil {
		return err
	}
	_, err := j.f.Write(buf.Bytes())
	return err
}

func (j *journal) close() error {
	if j == nil {
		return nil
	}
	return j.f.Close()
}
