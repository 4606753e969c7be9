//go:build !amd64 || purego

package cbc

// useAESNI is false without the assembly: RangeDecrypter decrypts with crypto/aes one block at a time.
var useAESNI = false

// useVAES is false without the assembly.
var useVAES = false

func decryptAESNI(*decKeys, *[BlockSize]byte, []byte) {
	panic("cbc: no AES-NI decryption in this build")
}

func expandKeyAESNI(int, *byte, *byte, *byte) {
	panic("cbc: no AES-NI key schedule in this build")
}
