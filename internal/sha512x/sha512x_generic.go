//go:build !amd64 || purego

package sha512x

// useAsm is false without the assembly: New returns crypto/sha512's hash.
var useAsm = false

func block(*[8]uint64, []byte) {
	panic("sha512x: no block function in this build")
}
