package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
	"github.com/rescalefs/rescalefs/upload"
)

// TestToResumeLeavesRejectedOut: an upload the platform refused for good is kept by the engine (and
// counted by Engine.Pending) but never sent again, so the mount must not say it resumes on the next
// mount ("1 uploads pending; they resume on the next mount" at every unmount, "resuming uploads" at
// every start). One upload refused, one queued behind a frozen platform: one to resume.
func TestToResumeLeavesRejectedOut(t *testing.T) {
	emu, err := emulator.New(emulator.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emu.Close() })
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	defer emu.SetFrozen(false)
	emu.RejectUploadName("refused.txt")
	client, err := remote.New(remote.Options{BaseURL: srv.URL, APIKey: emu.APIKey()})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := upload.New(upload.Options{Client: client, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	eng.Start(ctx)
	t.Cleanup(func() { cancel(); eng.Close() })
	enqueue := func(name string) string {
		t.Helper()
		f, err := eng.CreateStaging()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("some bytes\n"); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		id, err := eng.Enqueue(f.Name(), name)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	refused := enqueue("refused.txt")
	waitFor(t, func() bool { st, _ := eng.Status(refused); return st.State == upload.StateRejected })
	emu.SetFrozen(true)
	enqueue("waiting.txt")
	if n := eng.Pending(); n != 2 {
		t.Fatalf("engine pending %d, want 2 (the rejected one is kept)", n)
	}
	if n := toResume(eng); n != 1 {
		t.Fatalf("to resume %d, want 1: the rejected upload is never sent again", n)
	}
}
