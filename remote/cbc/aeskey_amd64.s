//go:build amd64 && !purego

#include "textflag.h"

// The AES key schedule with AES-NI, written from FIPS-197 (KeyExpansion, 5.2; the Equivalent Inverse
// Cipher's round keys, 5.3.5) and the Intel SDM's definitions of AESKEYGENASSIST and AESIMC. Nothing
// here loads from an address that depends on the key, so it runs in the same time for every key.
//
// A round key sits in an XMM register in FIPS-197's byte order: word w[i] of the schedule is dword i
// mod 4 of its round key, its first byte the lowest. AESKEYGENASSIST $rcon, src, dst sets dword 1 of
// dst to RotWord(SubWord(src dword 1)) xor rcon, dword 3 to the same of src dword 3, and dwords 0 and
// 2 to SubWord of src dwords 1 and 3 (no rotation, no rcon). RotWord and SubWord commute, so dword 3
// taken from the last round key is KeyExpansion's temp for a word i with i mod Nk = 0 when Nk is 4 or
// 8; dword 2 is the SubWord-only temp of AES-256's i mod 8 = 4.
//
// Every new word is the word Nk before it xor the word before it, so four new words in a row are the
// running xor (prefix) of the four words Nk before them, each xored with the temp of the first: with
// the four old words in a register, PREFIX turns [a b c d] into [a a^b a^b^c a^b^c^d] and the temp,
// broadcast to all four dwords with PSHUFD, is xored in.
//
// Registers: AX the key, DI where the next encryption round key goes, R9 the first one, SI the next
// decryption round key, CX Nk and then Nr, R8 the encryption round key being turned into a decryption
// one; X0, X1 the last words of the schedule, X2 the temp, X3 scratch.

// PREFIX(x, t): x = [a, a^b, a^b^c, a^b^c^d] of x = [a, b, c, d], with scratch t.
#define PREFIX(x, t) \
	MOVOU  x, t; \
	PSLLDQ $4, t; \
	PXOR   t, x; \
	MOVOU  x, t; \
	PSLLDQ $8, t; \
	PXOR   t, x

// AES-128 (Nk = 4): X0 holds round key r; make round key r+1 in X0 and store it.
#define ROUND128(rcon) \
	AESKEYGENASSIST $rcon, X0, X2; \
	PSHUFD          $0xff, X2, X2; \
	PREFIX(X0, X3); \
	PXOR            X2, X0; \
	MOVOU           X0, (DI); \
	ADDQ            $16, DI

// AES-256 (Nk = 8), round keys 2j and 2j+1 in X0 and X1. ROUND256A makes round key 2j+2 in X0 from the
// temp of RotWord, SubWord and Rcon on its last word (dword 3 of X1); ROUND256B makes round key 2j+3 in
// X1 from the SubWord-only temp on the last word of the new X0 (dword 3, which AESKEYGENASSIST puts in
// dword 2 without rotation).
#define ROUND256A(rcon) \
	AESKEYGENASSIST $rcon, X1, X2; \
	PSHUFD          $0xff, X2, X2; \
	PREFIX(X0, X3); \
	PXOR            X2, X0; \
	MOVOU           X0, (DI); \
	ADDQ            $16, DI

#define ROUND256B \
	AESKEYGENASSIST $0, X0, X2; \
	PSHUFD          $0xaa, X2, X2; \
	PREFIX(X1, X3); \
	PXOR            X2, X1; \
	MOVOU           X1, (DI); \
	ADDQ            $16, DI

// AES-192 (Nk = 6) goes by six words, which straddle round keys: X0 holds w[i..i+3] and the low half
// of X1 w[i+4..i+5], i a multiple of 6. ROUND192FIRST4 makes w[i+6..i+9] in X0 from the temp of
// RotWord, SubWord and Rcon on w[i+5] (dword 1 of X1) and stores them; ROUND192LAST2 then makes
// w[i+10] = w[i+4]^w[i+9] and w[i+11] = w[i+5]^w[i+10] in the low half of X1 and stores those. (The
// high half of X1 is left over; AESKEYGENASSIST's dword 1 does not depend on it.)
#define ROUND192FIRST4(rcon) \
	AESKEYGENASSIST $rcon, X1, X2; \
	PSHUFD          $0x55, X2, X2; \
	PREFIX(X0, X3); \
	PXOR            X2, X0; \
	MOVOU           X0, (DI); \
	ADDQ            $16, DI

#define ROUND192LAST2 \
	PSHUFD $0xff, X0, X2; \
	MOVOU  X1, X3; \
	PSLLDQ $4, X3; \
	PXOR   X3, X1; \
	PXOR   X2, X1; \
	MOVQ   X1, (DI); \
	ADDQ   $8, DI

// func expandKeyAESNI(nk int, key, enc, dec *byte)
TEXT ·expandKeyAESNI(SB), NOSPLIT, $0-32
	MOVQ nk+0(FP), CX
	MOVQ key+8(FP), AX
	MOVQ enc+16(FP), DI
	MOVQ dec+24(FP), SI
	MOVQ DI, R9

	MOVOU (AX), X0
	MOVOU X0, (DI)
	ADDQ  $16, DI
	CMPQ  CX, $6
	JEQ   key192
	JGT   key256

	// AES-128: round keys 1 to 10.
	ROUND128(0x01)
	ROUND128(0x02)
	ROUND128(0x04)
	ROUND128(0x08)
	ROUND128(0x10)
	ROUND128(0x20)
	ROUND128(0x40)
	ROUND128(0x80)
	ROUND128(0x1b)
	ROUND128(0x36)
	JMP decrypt

key192:
	// AES-192: words 6 to 51, the last group of six cut to four.
	MOVQ 16(AX), X1
	MOVQ X1, (DI)
	ADDQ $8, DI
	ROUND192FIRST4(0x01)
	ROUND192LAST2
	ROUND192FIRST4(0x02)
	ROUND192LAST2
	ROUND192FIRST4(0x04)
	ROUND192LAST2
	ROUND192FIRST4(0x08)
	ROUND192LAST2
	ROUND192FIRST4(0x10)
	ROUND192LAST2
	ROUND192FIRST4(0x20)
	ROUND192LAST2
	ROUND192FIRST4(0x40)
	ROUND192LAST2
	ROUND192FIRST4(0x80)
	JMP decrypt

key256:
	// AES-256: round keys 2 to 14.
	MOVOU 16(AX), X1
	MOVOU X1, (DI)
	ADDQ  $16, DI
	ROUND256A(0x01)
	ROUND256B
	ROUND256A(0x02)
	ROUND256B
	ROUND256A(0x04)
	ROUND256B
	ROUND256A(0x08)
	ROUND256B
	ROUND256A(0x10)
	ROUND256B
	ROUND256A(0x20)
	ROUND256B
	ROUND256A(0x40)

decrypt:
	// The Equivalent Inverse Cipher's round keys: encryption round keys Nr down to 0, with
	// InvMixColumns (AESIMC) on all but the first and the last.
	ADDQ  $6, CX
	MOVQ  CX, R8
	SHLQ  $4, R8
	ADDQ  R9, R8
	MOVOU (R8), X0
	MOVOU X0, (SI)

invmix:
	ADDQ   $16, SI
	SUBQ   $16, R8
	CMPQ   R8, R9
	JEQ    last
	MOVOU  (R8), X0
	AESIMC X0, X0
	MOVOU  X0, (SI)
	JMP    invmix

last:
	MOVOU (R8), X0
	MOVOU X0, (SI)
	RET
