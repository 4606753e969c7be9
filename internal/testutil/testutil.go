// Package testutil holds helpers the tests of several packages share.
package testutil

import "math/rand/v2"

// RandomBytes returns n pseudo-random bytes, the same for the same seed: file contents that do not
// compress and that a test can generate again to compare with.
func RandomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
