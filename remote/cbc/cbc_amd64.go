//go:build amd64 && !purego

package cbc

import "golang.org/x/sys/cpu"

// useAESNI says whether RangeDecrypter decrypts with decryptAESNI: on a CPU with AES-NI. Tests turn
// it off to run the fallback (crypto/aes one block at a time); build with -tags purego to leave the
// assembly out altogether.
var useAESNI = cpu.X86.HasAES

// useVAES says whether decryptAESNI runs cbcDecryptVAES rather than cbcDecryptAESNI: on a CPU with VAES
// and AVX2, which it needs for VEX-encoded VAESDEC on YMM registers, VBROADCASTI128 and VINSERTI128.
// Tests turn it off to run cbcDecryptAESNI.
var useVAES = vaesUsable(cpu.X86.HasAES, cpu.X86.HasAVX2, cpuidLeaf7ECX())

// vaesUsable decides useVAES from AES-NI, AVX2 (which x/sys/cpu reports only when the OS saves the YMM
// registers, and only from a CPUID that has leaf 7) and CPUID leaf 7's ECX. The VAES bit is read here
// rather than taken from x/sys/cpu, which reports it only on a CPU with AVX-512 (HasAVX512VAES): the YMM
// forms do not need AVX-512, and the CPUs with VAES and no AVX-512 (AMD Zen 3, Intel's client cores
// since Alder Lake) are common workstations.
func vaesUsable(hasAES, hasAVX2 bool, leaf7ECX uint32) bool {
	const cpuidVAES = 1 << 9 // CPUID.(EAX=7, ECX=0):ECX bit 9 (Intel SDM, vol. 2A, CPUID)
	return hasAES && hasAVX2 && leaf7ECX&cpuidVAES != 0
}

// cpuidLeaf7ECX returns CPUID.(EAX=7, ECX=0):ECX, or 0 on a CPU whose CPUID stops below leaf 7.
func cpuidLeaf7ECX() uint32 {
	if maxLeaf, _, _, _ := cpuid(0, 0); maxLeaf < 7 {
		return 0
	}
	_, _, ecx, _ := cpuid(7, 0)
	return ecx
}

// cpuid executes CPUID with EAX=leaf and ECX=subleaf, in cpuid_amd64.s.
func cpuid(leaf, subleaf uint32) (eax, ebx, ecx, edx uint32)

// decryptAESNI CBC-decrypts the whole blocks of b in place, chained from *iv, and leaves their last
// ciphertext block in *iv. It needs useAESNI.
func decryptAESNI(k *decKeys, iv *[BlockSize]byte, b []byte) {
	if len(b) < BlockSize {
		return
	}
	if useVAES {
		cbcDecryptVAES(k.nr, &k.rk[0], &iv[0], &b[0], len(b)/BlockSize)
		return
	}
	cbcDecryptAESNI(k.nr, &k.rk[0], &iv[0], &b[0], len(b)/BlockSize)
}

// cbcDecryptAESNI decrypts n blocks at b in place with the nr+1 round keys at rk (decKeys.rk), chained
// from the block at iv, where it leaves the last ciphertext block. It is in cbc_amd64.s: CBC decryption
// of block i needs only ciphertext blocks i and i-1, so it decrypts 8 blocks at once, keeping 8
// independent AESDEC chains in flight where crypto/aes waits on one block's latency at a time.
//
//go:noescape
func cbcDecryptAESNI(nr int, rk, iv, b *byte, n int)

// cbcDecryptVAES is cbcDecryptAESNI with VAES, in cbc_vaes_amd64.s: two blocks per instruction in the
// lanes of a YMM register, 16 blocks at once. It needs useVAES.
//
//go:noescape
func cbcDecryptVAES(nr int, rk, iv, b *byte, n int)
