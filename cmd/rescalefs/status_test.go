package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/rescalefs/rescalefs/download"
	rfs "github.com/rescalefs/rescalefs/fs"
	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/upload"
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

// TestBusy is --watch's rule without a mount: what keeps it waiting, and what does not.
func TestBusy(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	st := func(mod func(*mountState)) mountState {
		s := mountState{}
		s.Time = now
		mod(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		st   mountState
		want string
	}{
		{"nothing", st(func(*mountState) {}), ""},
		{"settling", st(func(s *mountState) { s.Settling = []string{"a.txt"} }), "1 settling"},
		{"queued and sending", st(func(s *mountState) {
			s.Uploads = []upload.Status{{State: upload.StateQueued}, {State: upload.StateUploading}, {State: upload.StateRetrying}}
		}), "3 uploading"},
		{"done, failed and damaged wait for no one", st(func(s *mountState) {
			s.Uploads = []upload.Status{{State: upload.StateDone}, {State: upload.StateFailed}, {State: upload.StateDamaged}}
		}), ""},
		{"published, not yet shown in files/", st(func(s *mountState) {
			s.Uploads = []upload.Status{{State: upload.StateDone}}
			s.Publishing = 1
		}), "1 uploading"},
		// A failed upload's file stays handed to the engine in the mount's table (publishing) until
		// it goes through: --watch waited on it forever.
		{"failed, still publishing in the mount's table", st(func(s *mountState) {
			s.Uploads = []upload.Status{{State: upload.StateFailed}}
			s.Publishing = 1
		}), ""},
		{"one sending beside one failed", st(func(s *mountState) {
			s.Uploads = []upload.Status{{State: upload.StateUploading}, {State: upload.StateFailed}}
			s.Publishing = 2
		}), "1 uploading"},
		{"a copy in progress", st(func(s *mountState) {
			s.Downloads = []rfs.DownloadStatus{{Size: 100, Offset: 50, LastRead: now.Add(-time.Second)}}
		}), "1 reading"},
		{"just opened", st(func(s *mountState) {
			s.Downloads = []rfs.DownloadStatus{{Size: 100, Opened: now.Add(-time.Second)}}
		}), "1 reading"},
		{"read to its end (tail -f of a finished file)", st(func(s *mountState) {
			s.Downloads = []rfs.DownloadStatus{{Size: 100, Offset: 100, LastRead: now}}
		}), ""},
		{"left open mid-way, idle", st(func(s *mountState) {
			s.Downloads = []rfs.DownloadStatus{{Size: 100, Offset: 10, LastRead: now.Add(-time.Minute)}}
		}), ""},
		{"a live file never ends", st(func(s *mountState) {
			s.Downloads = []rfs.DownloadStatus{{Size: 100, Offset: 10, LastRead: now, Live: true}}
		}), ""},
		{"auto-download", st(func(s *mountState) {
			s.AutoDownload = &download.Status{Jobs: []download.JobStatus{{State: "downloading"}, {State: "done"}}}
		}), "1 auto-downloading"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.Join(busy(tc.st), ", ")
			if got != tc.want || settled(tc.st) != (tc.want == "") {
				t.Fatalf("busy %q, settled %v; want %q", got, settled(tc.st), tc.want)
			}
		})
	}
}

// TestPlatformLine: when the platform last answered comes from the API client's health (the status's
// own "platform"), the one source --metrics reads too; the transport's last error shows only while
// calls fail.
func TestPlatformLine(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	errText := "GET /api/v2/jobs/: 503 Service Unavailable"
	for _, tc := range []struct {
		p    *platformStatus
		h    *remote.HealthSnapshot
		want string
	}{
		{nil, &remote.HealthSnapshot{LastAnswer: now}, ""},
		{&platformStatus{URL: "https://eu.rescale.com"}, nil, "platform https://eu.rescale.com: no answer yet"},
		{&platformStatus{URL: "u"}, &remote.HealthSnapshot{}, "platform u: no answer yet"},
		{&platformStatus{URL: "u", LastError: errText}, &remote.HealthSnapshot{LastAnswer: now.Add(-3 * time.Second)},
			"platform u: last answered 3s ago"},
		{&platformStatus{URL: "u", LastError: errText}, &remote.HealthSnapshot{LastAnswer: now.Add(-3 * time.Second), Retrying: 1},
			"platform u: last answered 3s ago; last error: " + errText},
		{&platformStatus{URL: "u", LastError: errText}, &remote.HealthSnapshot{LastAnswer: now.Add(-95 * time.Second), Down: true},
			"platform u: last answered 1m35s ago; last error: " + errText},
	} {
		st := mountState{Platform: tc.p}
		st.Time = now
		st.Status.Platform = tc.h
		if got := platformLine(st); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestEndpointOf(t *testing.T) {
	for path, want := range map[string]string{
		"/api/v2/jobs/":                                      "/api/v2/jobs/",
		"/api/v2/jobs/XdAhp/files/":                          "/api/v2/jobs/{id}/files/",
		"/api/v2/jobs/XdAhp/statuses/":                       "/api/v2/jobs/{id}/statuses/",
		"/api/v2/files/aB3dE/contents/":                      "/api/v2/files/{id}/contents/",
		"/api/v2/jobs/XdAhp/runs/1/directory-contents/":      "/api/v2/jobs/{id}/runs/{id}/directory-contents/",
		"/api/v2/jobs/XdAhp/runs/1/tail/process_output.log":  "/api/v2/jobs/{id}/runs/{id}/tail/{path}/",
		"/api/v2/jobs/XdAhp/runs/1/tail/sub/dir/output.csv/": "/api/v2/jobs/{id}/runs/{id}/tail/{path}/",
		"/api/v3/users/me/":                                  "/api/v3/users/me/",
	} {
		if got := endpointOf(path); got != want {
			t.Errorf("endpointOf(%q) = %q, want %q", path, got, want)
		}
	}
}

// TestPrintStatusKept: `rescalefs status` lists the files the mount kept in the library after a lost
// answer, by the path files/ shows them at and why, under a line that says what to do; nothing when
// there are none. Before, they were only in the mount's log.
func TestPrintStatusKept(t *testing.T) {
	kept := []rfs.KeptFile{
		{Kept: upload.Kept{Name: "a.txt", FileID: "f1", Why: "may be the publication of a file removed from uploads/"}, Path: "files/a.txt"},
		{Kept: upload.Kept{Name: "a.txt", FileID: "f2", Why: "or another tool's upload"}, Path: "files/a~f2.txt"},
	}
	for _, tc := range []struct {
		name string
		kept []rfs.KeptFile
		want []string
	}{
		{"none", nil, nil},
		{"one", kept[:1], []string{
			"1 file kept in the library after a lost answer, not deleted (delete the unwanted ones on the platform):",
			"  kept     files/a.txt                      may be the publication of a file removed from uploads/",
		}},
		{"two", kept, []string{
			"2 files kept in the library after a lost answer, not deleted (delete the unwanted ones on the platform):",
			"  kept     files/a.txt                      may be the publication of a file removed from uploads/",
			"  kept     files/a~f2.txt                   or another tool's upload",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var st mountState
			st.Kept = tc.kept
			var out bytes.Buffer
			printStatus(&out, "/mnt", st, false)
			var got []string
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, "kept") {
					got = append(got, l)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("kept lines:\n%s\nwant:\n%s\n(all: %s)", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), out.String())
			}
		})
	}
}
