//go:build amd64 && !purego

package cbc

// expandKeyAESNI is the key schedule of decKeys.init, in aeskey_amd64.s: from the nk-word key at key it
// writes the nk+7 encryption round keys (FIPS-197 KeyExpansion) at enc and the Equivalent Inverse
// Cipher's round keys (decKeys.rk) at dec, 16 bytes each. It needs AES-NI (useAESNI).
//
//go:noescape
func expandKeyAESNI(nk int, key, enc, dec *byte)
