//go:build amd64 && !purego

package sha512x

//go:generate go run gen.go

import "golang.org/x/sys/cpu"

// useAsm says whether New returns the package's digest, whose blocks blockAVX512 hashes. Tests turn
// it off to run the fallback (crypto/sha512); build with -tags purego to leave the assembly out.
var useAsm = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL && cpu.X86.HasAVX2 && cpu.X86.HasBMI2

// block hashes the whole blocks of p into h.
func block(h *[8]uint64, p []byte) {
	if len(p) >= BlockSize {
		blockAVX512(h, &p[0], len(p)/BlockSize)
	}
}

// blockAVX512 hashes n blocks at p into h. It is in sha512x_amd64.s.
//
//go:noescape
func blockAVX512(h *[8]uint64, p *byte, n int)
