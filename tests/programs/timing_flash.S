/*
 * Flash timing microbenchmarks (conformance suite, tests/test_timing_conformance.py).
 * Built for the STM32F407 (Cortex-M4, 5 wait states, ART accelerator: 16-byte lines, 64
 * lines fully associative, miss 5 cycles) and the RP2040 (Cortex-M0+, XIP cache: 8-byte
 * lines, 2-way 16 KB, miss 53 cycles), so only ARMv6-M instructions are used.
 * Cold runs (caches flushed): each executed block touches the fetch lines it spans, in
 * execution order; touching the line just touched again is free; the first touch of a line
 * is a miss, except on the STM32F407 when it is the line right after the previous one: the
 * ART's sequential prefetch filled it while the previous line executed, so it waits only
 * max(0, 5 - the block's cycles per 16-byte line).  The RP2040's XIP cache has no prefetch
 * (datasheet §2.6.3.1): every new line is a miss.
 * Core cycles: M4 ADDS 1, B 1 + P(1) = 2, BX 2; M0+ ADDS 1, B 2, BX 2.
 * Functions are aligned to 16 bytes, so they start a line on both MCUs.
 */
    .syntax unified
    .thumb
    .text

    .macro FUNC name
    .global \name
    .type \name, %function
    .thumb_func
    .balign 16
\name:
    .endm

    .macro ADDS16
    .rept 16
    adds r0, r0, #1
    .endr
    .endm

/* flash_straight: 16 ADDS + BX LR, 34 bytes in one block: core 16 + 2 = 18.
 * STM32F407 cold: lines 0, 1, 2 of 16 bytes: line 0 misses, 1 and 2 are prefetched and
 *   the block runs 18 x 16 / 34 = 8.5 > 5 cycles per line (no wait): 18 + 1 x 5 = 23;
 *   warm 18.
 * RP2040 cold: lines 0..4 of 8 bytes, each a miss: 18 + 5 x 53 = 283; warm 18. */
    FUNC flash_straight
    ADDS16
    bx lr
    .size flash_straight, . - flash_straight

/* flash_far: B over 62 bytes of never-executed filler to ADDS; BX.
 * STM32F407: core B 2 + ADDS 1 + BX 2 = 5; the B's block is in line 0 (miss), the target
 *   at offset 64 is line 4 (not the line after line 0: miss): 5 + 2 x 5 = 15.
 * RP2040: core B 2 + ADDS 1 + BX 2 = 5; line 0 miss, target line 8 miss: 5 + 2 x 53 = 111 */
    FUNC flash_far
    b 1f
    .rept 31
    nop
    .endr
1:  adds r0, r0, #1
    bx lr
    .size flash_far, . - flash_far

/* flash_next_line: B to the very next line (STM32F407: offset 16, line 1 after line 0):
 * core 5; line 0 miss, line 1 sequential (prefetched): 5 + 5 = 10.
 * (RP2040: offset 16 is line 2, not line 1: 5 + 2 x 53 = 111, not tested) */
    FUNC flash_next_line
    b 1f
    .rept 7
    nop
    .endr
1:  adds r0, r0, #1
    bx lr
    .size flash_next_line, . - flash_next_line

/* flash_loop(n): MOVS; loop ADDS, SUBS, BNE; BX: 10 bytes in line 0 on both MCUs.
 * M4 core: 1 + 4 (n - 1) + 3 + 2 = 4n + 2; M0+ core: the same (ADDS/SUBS 1, BNE 2 / 1).
 * cold: the first block misses line 0, the loop stays in it; STM32F407 n = 10: 42 + 5 = 47.
 * RP2040 (8-byte lines): the BX at offset 8 is in line 1, a second miss: 42 + 2 x 53 = 148 */
    FUNC flash_loop
    movs r1, #0
1:  adds r1, r1, #1
    subs r0, r0, #1
    bne 1b
    bx lr
    .size flash_loop, . - flash_loop

/* ram_straight: flash_straight's code placed in SRAM (.ramfunc): no flash cycles even cold:
 * 16 + 2 = 18 on both MCUs. */
    .section .ramfunc, "ax", %progbits
    FUNC ram_straight
    ADDS16
    bx lr
    .size ram_straight, . - ram_straight
