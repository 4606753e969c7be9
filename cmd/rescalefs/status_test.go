package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseRescalefsMounts(t *testing.T) {
	info := `36 35 98:0 / /home/u/rescale rw,nosuid - fuse.rescalefs rescalefs rw,user_id=0
37 35 98:1 / /mnt/other rw - fuse.sshfs host: rw
38 35 98:2 / /mnt/with\040space rw - fuse.rescalefs rescalefs rw
`
	got := parseRescalefsMounts(strings.NewReader(info))
	if len(got) != 2 || got[0] != "/home/u/rescale" || got[1] != "/mnt/with space" {
		t.Errorf("got %q", got)
	}
}

func TestStatusUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"--help"}, exitOK},
		{[]string{"--bogus"}, exitUsage},
		{[]string{"a", "b"}, exitUsage},
		{[]string{t.TempDir()}, exitFailure}, // not a mount: no .rescalefs/status
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"status"}, c.args...), &out, &errb); code != c.code {
			t.Errorf("status %q: exit %d, want %d (%s)", c.args, code, c.code, errb.String())
		}
	}
}
