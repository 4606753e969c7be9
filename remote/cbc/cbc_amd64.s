//go:build amd64 && !purego

#include "textflag.h"

// CBC decryption with AES-NI, written from the instruction definitions (Intel SDM: AESDEC does one round
// of the Equivalent Inverse Cipher, AESDECLAST the last one). Plaintext block i is
// D(C[i]) xor C[i-1], so blocks are independent given the ciphertext: the main loop runs 8 of them
// through the rounds side by side, which hides AESDEC's latency. Decrypting in place, the 8 ciphertext
// blocks are read before any plaintext is written, and the 8th is kept (X8) as the next chain value.
//
// Registers: X0-X7 the 8 states, X8 the chain value (the ciphertext block before the current one),
// X9 a ciphertext block, X10 the round key; AX round key 0, R10 the last round key, DI the current
// one, SI the data, BX the blocks left, DX the IV.

// func cbcDecryptAESNI(nr int, rk, iv, b *byte, n int)
TEXT ·cbcDecryptAESNI(SB), NOSPLIT, $0-40
	MOVQ nr+0(FP), CX
	MOVQ rk+8(FP), AX
	MOVQ iv+16(FP), DX
	MOVQ b+24(FP), SI
	MOVQ n+32(FP), BX

	MOVOU (DX), X8
	MOVQ  CX, R10
	SHLQ  $4, R10
	ADDQ  AX, R10

loop8:
	CMPQ BX, $8
	JB   tail

	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7

	MOVOU (AX), X10
	PXOR  X10, X0
	PXOR  X10, X1
	PXOR  X10, X2
	PXOR  X10, X3
	PXOR  X10, X4
	PXOR  X10, X5
	PXOR  X10, X6
	PXOR  X10, X7

	LEAQ 16(AX), DI

rounds8:
	MOVOU  (DI), X10
	AESDEC X10, X0
	AESDEC X10, X1
	AESDEC X10, X2
	AESDEC X10, X3
	AESDEC X10, X4
	AESDEC X10, X5
	AESDEC X10, X6
	AESDEC X10, X7
	ADDQ   $16, DI
	CMPQ   DI, R10
	JB     rounds8

	MOVOU      (R10), X10
	AESDECLAST X10, X0
	AESDECLAST X10, X1
	AESDECLAST X10, X2
	AESDECLAST X10, X3
	AESDECLAST X10, X4
	AESDECLAST X10, X5
	AESDECLAST X10, X6
	AESDECLAST X10, X7

	// XOR each with the ciphertext block before it, still in memory: nothing is stored yet.
	PXOR  X8, X0
	MOVOU 0(SI), X9
	PXOR  X9, X1
	MOVOU 16(SI), X9
	PXOR  X9, X2
	MOVOU 32(SI), X9
	PXOR  X9, X3
	MOVOU 48(SI), X9
	PXOR  X9, X4
	MOVOU 64(SI), X9
	PXOR  X9, X5
	MOVOU 80(SI), X9
	PXOR  X9, X6
	MOVOU 96(SI), X9
	PXOR  X9, X7
	MOVOU 112(SI), X8

	MOVOU X0, 0(SI)
	MOVOU X1, 16(SI)
	MOVOU X2, 32(SI)
	MOVOU X3, 48(SI)
	MOVOU X4, 64(SI)
	MOVOU X5, 80(SI)
	MOVOU X6, 96(SI)
	MOVOU X7, 112(SI)

	ADDQ $128, SI
	SUBQ $8, BX
	JMP  loop8

tail:
	TESTQ BX, BX
	JZ    done

tail1:
	// One block at a time: fewer than 8 are left.
	MOVOU (SI), X0
	MOVOU X0, X9
	MOVOU (AX), X10
	PXOR  X10, X0
	LEAQ  16(AX), DI

rounds1:
	MOVOU  (DI), X10
	AESDEC X10, X0
	ADDQ   $16, DI
	CMPQ   DI, R10
	JB     rounds1

	MOVOU      (R10), X10
	AESDECLAST X10, X0
	PXOR       X8, X0
	MOVOU      X9, X8
	MOVOU      X0, (SI)
	ADDQ       $16, SI
	DECQ       BX
	JNZ        tail1

done:
	MOVOU X8, (DX)
	RET
