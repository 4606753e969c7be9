//go:build amd64 && !purego

#include "textflag.h"

// CBC decryption with VAES on 256-bit registers, written from the Intel SDM's definitions: VAESDEC and
// VAESDECLAST on a YMM register do AESDEC and AESDECLAST on each of its two 128-bit lanes, each lane with
// the round key in the same lane of the key operand. So a YMM register holds two blocks, and with the
// round key broadcast to both lanes (VBROADCASTI128) one instruction does a round of two blocks. The
// main loop runs 16 blocks (8 registers) through the rounds side by side, as cbcDecryptAESNI runs 8,
// which keeps enough independent VAESDECs in flight to fill the pipeline with twice the blocks per
// instruction.
//
// After the rounds, state j (blocks 2j and 2j+1) is xored with ciphertext blocks 2j-1 and 2j: for j > 0
// that is the 32 bytes 16 before it, read straight from memory; for j = 0 the chain value goes in the
// low lane (VINSERTI128). Decrypting in place, all of that, and the last ciphertext block (the next
// chain value), is read before any plaintext is stored.
//
// Fewer than 16 blocks left are done in at most four passes of 8, 4, 2 and 1 blocks (the bits of the
// count), each with its blocks side by side: a tail of up to 15 blocks one at a time would wait on the
// rounds' latency 15 times.
//
// Registers: Y0-Y7 the states, X8 the chain value (the ciphertext block before the current one), Y9 the
// round key in both lanes, Y10 scratch; AX round key 0, R10 the last round key, DI the current one, SI
// the data, BX the blocks left, DX the IV.

// func cbcDecryptVAES(nr int, rk, iv, b *byte, n int)
TEXT ·cbcDecryptVAES(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), CX
	MOVQ rk+8(FP), AX
	MOVQ iv+16(FP), DX
	MOVQ b+24(FP), SI
	MOVQ n+32(FP), BX

	VMOVDQU (DX), X8
	MOVQ    CX, R10
	SHLQ    $4, R10
	ADDQ    AX, R10

loop16:
	CMPQ BX, $16
	JB   tail

	VBROADCASTI128 (AX), Y9
	VPXOR          0(SI), Y9, Y0
	VPXOR          32(SI), Y9, Y1
	VPXOR          64(SI), Y9, Y2
	VPXOR          96(SI), Y9, Y3
	VPXOR          128(SI), Y9, Y4
	VPXOR          160(SI), Y9, Y5
	VPXOR          192(SI), Y9, Y6
	VPXOR          224(SI), Y9, Y7

	LEAQ 16(AX), DI

rounds16:
	VBROADCASTI128 (DI), Y9
	VAESDEC        Y9, Y0, Y0
	VAESDEC        Y9, Y1, Y1
	VAESDEC        Y9, Y2, Y2
	VAESDEC        Y9, Y3, Y3
	VAESDEC        Y9, Y4, Y4
	VAESDEC        Y9, Y5, Y5
	VAESDEC        Y9, Y6, Y6
	VAESDEC        Y9, Y7, Y7
	ADDQ           $16, DI
	CMPQ           DI, R10
	JB             rounds16

	VBROADCASTI128 (R10), Y9
	VAESDECLAST    Y9, Y0, Y0
	VAESDECLAST    Y9, Y1, Y1
	VAESDECLAST    Y9, Y2, Y2
	VAESDECLAST    Y9, Y3, Y3
	VAESDECLAST    Y9, Y4, Y4
	VAESDECLAST    Y9, Y5, Y5
	VAESDECLAST    Y9, Y6, Y6
	VAESDECLAST    Y9, Y7, Y7

	// XOR each pair with the two ciphertext blocks before it, still in memory: nothing is stored yet.
	VINSERTI128 $1, 0(SI), Y8, Y10
	VPXOR       Y10, Y0, Y0
	VPXOR       16(SI), Y1, Y1
	VPXOR       48(SI), Y2, Y2
	VPXOR       80(SI), Y3, Y3
	VPXOR       112(SI), Y4, Y4
	VPXOR       144(SI), Y5, Y5
	VPXOR       176(SI), Y6, Y6
	VPXOR       208(SI), Y7, Y7
	VMOVDQU     240(SI), X8

	VMOVDQU Y0, 0(SI)
	VMOVDQU Y1, 32(SI)
	VMOVDQU Y2, 64(SI)
	VMOVDQU Y3, 96(SI)
	VMOVDQU Y4, 128(SI)
	VMOVDQU Y5, 160(SI)
	VMOVDQU Y6, 192(SI)
	VMOVDQU Y7, 224(SI)

	ADDQ $256, SI
	SUBQ $16, BX
	JMP  loop16

tail:
	TESTQ $8, BX
	JZ    tail4

	// 8 blocks in 4 registers.
	VBROADCASTI128 (AX), Y9
	VPXOR          0(SI), Y9, Y0
	VPXOR          32(SI), Y9, Y1
	VPXOR          64(SI), Y9, Y2
	VPXOR          96(SI), Y9, Y3
	LEAQ           16(AX), DI

rounds8:
	VBROADCASTI128 (DI), Y9
	VAESDEC        Y9, Y0, Y0
	VAESDEC        Y9, Y1, Y1
	VAESDEC        Y9, Y2, Y2
	VAESDEC        Y9, Y3, Y3
	ADDQ           $16, DI
	CMPQ           DI, R10
	JB             rounds8

	VBROADCASTI128 (R10), Y9
	VAESDECLAST    Y9, Y0, Y0
	VAESDECLAST    Y9, Y1, Y1
	VAESDECLAST    Y9, Y2, Y2
	VAESDECLAST    Y9, Y3, Y3
	VINSERTI128    $1, 0(SI), Y8, Y10
	VPXOR          Y10, Y0, Y0
	VPXOR          16(SI), Y1, Y1
	VPXOR          48(SI), Y2, Y2
	VPXOR          80(SI), Y3, Y3
	VMOVDQU        112(SI), X8
	VMOVDQU        Y0, 0(SI)
	VMOVDQU        Y1, 32(SI)
	VMOVDQU        Y2, 64(SI)
	VMOVDQU        Y3, 96(SI)
	ADDQ           $128, SI

tail4:
	TESTQ $4, BX
	JZ    tail2

	// 4 blocks in 2 registers.
	VBROADCASTI128 (AX), Y9
	VPXOR          0(SI), Y9, Y0
	VPXOR          32(SI), Y9, Y1
	LEAQ           16(AX), DI

rounds4:
	VBROADCASTI128 (DI), Y9
	VAESDEC        Y9, Y0, Y0
	VAESDEC        Y9, Y1, Y1
	ADDQ           $16, DI
	CMPQ           DI, R10
	JB             rounds4

	VBROADCASTI128 (R10), Y9
	VAESDECLAST    Y9, Y0, Y0
	VAESDECLAST    Y9, Y1, Y1
	VINSERTI128    $1, 0(SI), Y8, Y10
	VPXOR          Y10, Y0, Y0
	VPXOR          16(SI), Y1, Y1
	VMOVDQU        48(SI), X8
	VMOVDQU        Y0, 0(SI)
	VMOVDQU        Y1, 32(SI)
	ADDQ           $64, SI

tail2:
	TESTQ $2, BX
	JZ    tail1

	// 2 blocks in 1 register.
	VBROADCASTI128 (AX), Y9
	VPXOR          0(SI), Y9, Y0
	LEAQ           16(AX), DI

rounds2:
	VBROADCASTI128 (DI), Y9
	VAESDEC        Y9, Y0, Y0
	ADDQ           $16, DI
	CMPQ           DI, R10
	JB             rounds2

	VBROADCASTI128 (R10), Y9
	VAESDECLAST    Y9, Y0, Y0
	VINSERTI128    $1, 0(SI), Y8, Y10
	VPXOR          Y10, Y0, Y0
	VMOVDQU        16(SI), X8
	VMOVDQU        Y0, 0(SI)
	ADDQ           $32, SI

tail1:
	TESTQ $1, BX
	JZ    done

	// The last block alone, in the low lane (the VEX forms on XMM registers are AESDEC and AESDECLAST).
	VMOVDQU (SI), X0
	VPXOR   (AX), X0, X0
	LEAQ    16(AX), DI

rounds1:
	VAESDEC (DI), X0, X0
	ADDQ    $16, DI
	CMPQ    DI, R10
	JB      rounds1

	VAESDECLAST (R10), X0, X0
	VPXOR       X8, X0, X0
	VMOVDQU     (SI), X8
	VMOVDQU     X0, (SI)

done:
	VMOVDQU X8, (DX)
	// Leave the upper halves clean for the SSE code that runs next (crypto, runtime).
	VZEROUPPER
	RET
