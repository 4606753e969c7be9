//go:build race

package fusetest

// RaceEnabled says the race detector is on: tests that are slow under it (100,000 files) scale down.
const RaceEnabled = true
