package cbc

import "fmt"

// The AES key schedule for the AES-NI decryption path (cbc_amd64.s), which needs the round keys in the
// form of FIPS-197's Equivalent Inverse Cipher (5.3.5), the one AESDEC computes a round of; crypto/aes
// keeps its round keys to itself.
//
// The schedule is computed in assembly (aeskey_amd64.s) with AESKEYGENASSIST (SubWord, RotWord and Rcon)
// and AESIMC (InvMixColumns), not in Go: a Go schedule looks the S-box up at addresses given by key bytes,
// which leaves the key in the cache's state for a local attacker to time (as crypto/aes avoids with
// AES-NI). The decrypter expands keys here only when it decrypts with AES-NI; without it it uses
// crypto/aes's own cipher and schedule. The Go schedule written from FIPS-197 (aeskey_ref_test.go) is
// the tests' reference.

// maxRounds is Nr for AES-256, the largest key size.
const maxRounds = 14

// roundKeys holds up to maxRounds+1 round keys of 16 bytes, in FIPS-197's byte order.
type roundKeys [(maxRounds + 1) * BlockSize]byte

// decKeys are the round keys of the Equivalent Inverse Cipher, in the order the decryption uses them:
// rk[0] is the last encryption round key (the first XOR), rk[1..nr-1] are encryption round keys nr-1..1
// with InvMixColumns applied (one per AESDEC), and rk[nr] is the cipher key's first round key
// (AESDECLAST).
type decKeys struct {
	nr int       // rounds: 10, 12 or 14 for 16-, 24- or 32-byte keys
	rk roundKeys // nr+1 round keys
}

// init derives the Equivalent Inverse Cipher's round keys from a 16-, 24- or 32-byte key. It needs
// AES-NI (useAESNI).
func (k *decKeys) init(key []byte) error {
	var enc roundKeys
	return k.initEnc(key, &enc)
}

// initEnc is init that leaves the encryption round keys (FIPS-197 KeyExpansion) in enc as well.
func (k *decKeys) initEnc(key []byte, enc *roundKeys) error {
	if len(key) != 16 && len(key) != 24 && len(key) != 32 {
		return fmt.Errorf("aes: key is %d bytes, want 16, 24 or 32", len(key))
	}
	nk := len(key) / 4
	k.nr = nk + 6
	expandKeyAESNI(nk, &key[0], &enc[0], &k.rk[0])
	return nil
}
