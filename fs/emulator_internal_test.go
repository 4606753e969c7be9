package fs

import (
	"net/http/httptest"
	"testing"

	"github.com/rescalefs/rescalefs/remote"
	"github.com/rescalefs/rescalefs/remote/emulator"
)

// newEmulatorClient starts an emulator over loopback HTTP with the given faults and no throttle on the
// scopes the tree's calls use, and returns it with an unpaced client of it; both are closed in cleanup.
// For tests inside this package, which cannot use fusetest (it imports fs).
func newEmulatorClient(t testing.TB, faults emulator.Faults) (*emulator.Emulator, *remote.Client) {
	t.Helper()
	emu, err := emulator.New(emulator.Options{Faults: faults,
		Limits: map[string]int{emulator.ScopeUser: 0, emulator.ScopeJobsUsage: 0, emulator.ScopeFileAccess: 0}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu)
	t.Cleanup(func() {
		srv.Close()
		emu.Close()
	})
	c, err := remote.New(remote.Options{BaseURL: srv.URL, APIKey: emu.APIKey(), Limits: map[remote.Scope]float64{}})
	if err != nil {
		t.Fatal(err)
	}
	return emu, c
}
