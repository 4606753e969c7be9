//go:build ignore

// gen writes sha512x_amd64.s (go generate, see sha512x_amd64.go).
// The rounds are fully unrolled, so the assembly is written by a program; the comments in the output
// say what each part computes.
package main

import (
	"fmt"
	"os"
	"strings"
)

// The round constants K (FIPS 180-4, 4.2.3).
var k = [80]uint64{
	0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
	0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
	0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
	0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
	0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
	0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
	0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
	0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
	0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
	0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
	0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
	0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
	0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
	0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
	0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
	0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
	0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
	0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
	0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
	0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
}

var out strings.Builder

func p(format string, args ...any) { fmt.Fprintf(&out, "\t"+format+"\n", args...) }
func c(format string, args ...any) { fmt.Fprintf(&out, "\t// "+format+"\n", args...) }

// Frame layout: wk holds K[t]+W[t] of the two blocks of a pair, in 40 rows of 32 bytes: row s is
// block A's words 2s, 2s+1, then block B's (the layout of the schedule's vectors).
const (
	wkRow   = 32
	frameWK = 80 / 2 * wkRow
	hSave   = frameWK      // the h pointer
	pSave   = frameWK + 8  // the data pointer
	nSave   = frameWK + 16 // the blocks left
	frame   = frameWK + 32
)

// wkOff is where K[t]+W[t] of the pair's block b (0 A, 1 B) is in the frame.
func wkOff(t, b int) int { return t/2*wkRow + 16*b + t%2*8 }

// v is the register holding schedule row s: a ring of 8 (rows s-8..s-1 are live).
func v(s int) string { return fmt.Sprintf("Y%d", s%8) }

// Scalar registers: the state a..h rotates through eight registers, one step per round; two more
// carry b XOR c and b AND c (for Maj) from one round to the next.
var state = [8]string{"R8", "R9", "R10", "R11", "R12", "R13", "R14", "AX"}

const (
	t1 = "BX"
	t2 = "CX"
	t3 = "DX"
)

const (
	xorBC = "SI"
	andBC = "DI"
)

// round emits round t of block b (FIPS 180-4, 6.4.2 step 3):
//
//	T1 = h + Σ1(e) + Ch(e,f,g) + K[t] + W[t];  T2 = Σ0(a) + Maj(a,b,c)
//	h=g g=f f=e e=d+T1 d=c c=b b=a a=T1+T2
//
// The register that held h receives the new a, the one of d the new e. Both use that the terms
// added never share a set bit, so XOR may be ADD:
//
//	Ch(e,f,g)  = (e AND f) + (NOT e AND g)
//	Maj(a,b,c) = (a AND (b XOR c)) + (b AND c)     (b XOR c and b AND c kept from the round before)
//
// The rounds are bound by the latency of e -> e' and a -> a' (two more independent instructions a
// round measured no slower). So e' is summed on its own (d+h+K+W first, then Ch, then Σ1 last, 4
// dependent steps from e) beside T1 in h, which costs two more adds than e' = d+T1 (5 steps); and
// a' adds a AND (b XOR c) early and Σ0(a) last (4 steps from a), where
// Maj = b XOR ((a XOR b) AND (b XOR c)) would take 5. Together: 1.14x -> 1.22x crypto/sha512.
//
// Each round is emitted in two halves, the second (a') after the first half (e') of the next
// round: the CPU starts ready instructions oldest first, so the e' chain, which bounds the speed,
// then no longer waits behind the a' work of its own round (1.21x -> 1.25x). A skew of two rounds
// would not work: a' of round t reads b, which round t+2 adds to as its d.
func round(t, b int) {
	roundE(t, b)
	if t > 0 {
		roundA(t - 1)
	}
	if t == 79 {
		roundA(t)
	}
}

// roundE emits the first half of round t: e' and T1.
func roundE(t, b int) {
	r := func(i int) string { return state[((i-t)%8+8)%8] }
	d, e, f, g, h := r(3), r(4), r(5), r(6), r(7)
	c("round %d", t)
	p("ADDQ %d(SP), %s", wkOff(t, b), h) // h+K+W
	p("MOVQ %s, %s", f, t3)
	p("ANDNQ %s, %s, %s", g, e, t2) // NOT e AND g
	p("ANDQ %s, %s", e, t3)         // e AND f
	p("RORXQ $14, %s, %s", e, t1)
	p("ADDQ %s, %s", h, d)
	p("ADDQ %s, %s", t2, t3) // Ch
	p("RORXQ $18, %s, %s", e, t2)
	p("ADDQ %s, %s", t3, d)
	p("XORQ %s, %s", t2, t1)
	p("ADDQ %s, %s", t3, h)
	p("RORXQ $41, %s, %s", e, t2)
	p("XORQ %s, %s", t2, t1) // Σ1
	p("ADDQ %s, %s", t1, d)  // e'
	p("ADDQ %s, %s", t1, h)  // T1
}

// roundA emits the second half of round t: a' = T1 + Maj + Σ0 (h holds T1).
func roundA(t int) {
	r := func(i int) string { return state[((i-t)%8+8)%8] }
	a, bb, h := r(0), r(1), r(7)
	p("ADDQ %s, %s", andBC, h)
	p("RORXQ $28, %s, %s", a, t1)
	p("ANDQ %s, %s", a, xorBC) // a AND (b XOR c)
	p("RORXQ $34, %s, %s", a, t2)
	p("ADDQ %s, %s", xorBC, h)
	p("XORQ %s, %s", t2, t1)
	p("MOVQ %s, %s", a, xorBC)
	p("RORXQ $39, %s, %s", a, t2)
	p("MOVQ %s, %s", a, andBC)
	p("XORQ %s, %s", t2, t1) // Σ0
	p("XORQ %s, %s", bb, xorBC)
	p("ADDQ %s, %s", t1, h) // a'
	p("ANDQ %s, %s", bb, andBC)
}

// schedule emits row s (s >= 8) of the message schedule of both blocks (FIPS 180-4, 6.4.2 step 1):
//
//	W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]   for t = 2s, 2s+1
//
// Each 128-bit lane holds two consecutive words of one block, so W[t-2] is row s-1, W[t-16] row
// s-8, and the odd-aligned W[t-7], W[t-15] are a VPALIGNR of two rows. It also stores K+W of the row.
// The schedule costs about 3% of the time (measured by leaving it out); four blocks at once on
// 512-bit vectors measured no faster.
func schedule(s int) {
	c("schedule row %d: W[%d], W[%d]", s, 2*s, 2*s+1)
	p("VPALIGNR $8, %s, %s, Y8", v(s-8), v(s-7))
	p("VPALIGNR $8, %s, %s, Y9", v(s-4), v(s-3))
	p("VPRORQ $1, Y8, Y10")
	p("VPRORQ $8, Y8, Y11")
	p("VPSRLQ $7, Y8, Y8")
	p("VPTERNLOGQ $0x96, Y10, Y11, Y8")
	p("VPADDQ Y9, %s, %s", v(s-8), v(s))
	p("VPRORQ $19, %s, Y10", v(s-1))
	p("VPRORQ $61, %s, Y11", v(s-1))
	p("VPSRLQ $6, %s, Y9", v(s-1))
	p("VPTERNLOGQ $0x96, Y10, Y11, Y9")
	p("VPADDQ Y8, %s, %s", v(s), v(s))
	p("VPADDQ Y9, %s, %s", v(s), v(s))
	storeWK(s)
}

func storeWK(s int) {
	p("VPADDQ kdup<>+%d(SB), %s, Y10", s*wkRow, v(s))
	p("VMOVDQU Y10, %d(SP)", s*wkRow)
}

// addState adds the state to the hash value at h (BX) and keeps the sum as the next state.
func addState() {
	p("MOVQ %d(SP), %s", hSave, t1)
	for i, r := range state {
		p("ADDQ %d(%s), %s", 8*i, t1, r)
		p("MOVQ %s, %d(%s)", r, 8*i, t1)
	}
}

// startBlock sets the carried b XOR c and b AND c for round 0.
func startBlock() {
	p("MOVQ %s, %s", state[1], xorBC)
	p("XORQ %s, %s", state[2], xorBC)
	p("MOVQ %s, %s", state[1], andBC)
	p("ANDQ %s, %s", state[2], andBC)
}

func main() {
	fmt.Fprintln(&out, `// Code generated by gen.go; DO NOT EDIT.

//go:build amd64 && !purego

#include "textflag.h"

// SHA-512 (FIPS 180-4, 6.4) of whole 128-byte blocks, written from the standard and the instruction
// definitions. Blocks go in pairs (A, B): the message schedule of both is computed with AVX-512VL on
// 256-bit vectors (one 128-bit lane per block, two words per lane; VPRORQ rotates, VPTERNLOGQ is a
// three-way xor), interleaved with the scalar rounds of block A so that vector and scalar work share
// the ports; the rounds of B then only read K+W from the frame. The rounds use BMI2 (RORX, ANDN).
// A lone last block is paired with itself and its B rounds skipped.
//
// Registers: R8-R14, AX the working variables a..h (renamed each round), BX CX DX temporaries, SI DI
// the carried b XOR c and b AND c; Y0-Y7 the last eight schedule rows, Y8-Y11 temporaries, Y15 the
// byte-swap mask. R14 is free in an ABI0 function (Go's wrapper restores g); BP and R15 are unused.`)
	fmt.Fprintln(&out)
	fmt.Fprintf(&out, "// func blockAVX512(h *[8]uint64, p *byte, n int)\n")
	fmt.Fprintf(&out, "TEXT ·blockAVX512(SB), 0, $%d-24\n", frame)
	p("MOVQ h+0(FP), BX")
	p("MOVQ p+8(FP), SI")
	p("MOVQ n+16(FP), DX")
	p("MOVQ BX, %d(SP)", hSave)
	p("VMOVDQU bswap<>(SB), Y15")
	for i, r := range state {
		p("MOVQ %d(BX), %s", 8*i, r)
	}
	fmt.Fprintln(&out, "\nloop:")
	p("TESTQ DX, DX")
	p("JZ done")
	c("CX is block B: the next block, or A again when A is the last one")
	p("LEAQ 128(SI), CX")
	p("CMPQ DX, $1")
	p("JNE pair")
	p("MOVQ SI, CX")
	fmt.Fprintln(&out, "\npair:")
	p("MOVQ SI, %d(SP)", pSave)
	p("MOVQ DX, %d(SP)", nSave)
	c("rows 0-7: the message words, big-endian")
	for s := 0; s < 8; s++ {
		p("VMOVDQU %d(SI), X%d", 16*s, s)
		p("VINSERTI128 $1, %d(CX), %s, %s", 16*s, v(s), v(s))
		p("VPSHUFB Y15, %s, %s", v(s), v(s))
		storeWK(s)
	}
	c("block A, with the schedule of rows 8-39")
	startBlock()
	for t := 0; t < 80; t++ {
		round(t, 0)
		if t%2 == 1 && t < 64 {
			schedule(t/2 + 8)
		}
	}
	addState()
	p("CMPQ %d(SP), $1", nSave)
	p("JEQ last")
	c("block B")
	startBlock()
	for t := 0; t < 80; t++ {
		round(t, 1)
	}
	addState()
	p("MOVQ %d(SP), SI", pSave)
	p("MOVQ %d(SP), DX", nSave)
	p("ADDQ $256, SI")
	p("SUBQ $2, DX")
	p("JMP loop")
	fmt.Fprintln(&out, "\nlast:")
	fmt.Fprintln(&out, "done:")
	p("VZEROUPPER")
	p("RET")
	fmt.Fprintln(&out)

	c("K[2s], K[2s+1] twice in each row: one per block")
	fmt.Fprintln(&out)
	for s := 0; s < 40; s++ {
		for i := 0; i < 4; i++ {
			fmt.Fprintf(&out, "DATA kdup<>+%d(SB)/8, $0x%016x\n", s*wkRow+8*i, k[2*s+i%2])
		}
	}
	fmt.Fprintf(&out, "GLOBL kdup<>(SB), RODATA|NOPTR, $%d\n\n", 40*wkRow)
	fmt.Fprintln(&out, "// VPSHUFB indices reversing the bytes of each 64-bit word.")
	for i := 0; i < 4; i++ {
		fmt.Fprintf(&out, "DATA bswap<>+%d(SB)/8, $0x%016x\n", 8*i, uint64(0x0001020304050607)+uint64(i%2)*0x0808080808080808)
	}
	fmt.Fprintln(&out, "GLOBL bswap<>(SB), RODATA|NOPTR, $32")
	if err := os.WriteFile("sha512x_amd64.s", []byte(out.String()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
