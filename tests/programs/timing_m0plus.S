/*
 * Cortex-M0+ timing microbenchmarks (conformance suite, tests/test_timing_conformance.py).
 * Run on the RP2040 after a warm-up call: every XIP cache line hits, so only core cycles
 * count.  Each derivation uses cost_models/cortex_m0plus.toml (M0+ TRM DDI 0484C Table 3.1
 * and the RP2040 datasheet figures quoted there):
 *   ALU/moves/shifts/extends 1; LDR/LDRB/LDRH and STR/STRB/STRH 2; LDM/STM/PUSH/POP 1 + N; POP {.., PC} 3 + N;
 *   B 2; B<cc> 1 not taken, 2 taken; BL 3; BX 2; MULS 1 (fast) or 32 (small multiplier).
 * The return is `bx lr` (2 cycles).  Memory operands use a frame carved below the SP.
 */
    .syntax unified
    .thumb
    .text

    .macro FUNC name
    .global \name
    .type \name, %function
    .thumb_func
    .balign 4
\name:
    .endm

/* m0_alu_chain: 4 x ADDS (1 each) = 4; BX LR 2; total 6 */
    FUNC m0_alu_chain
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    bx lr
    .size m0_alu_chain, . - m0_alu_chain

/* m0_alu_mix: MOVS 1 + LSLS 1 + EORS 1 + ORRS 1 + SUBS 1 + CMP 1 = 6; BX 2; total 8 */
    FUNC m0_alu_mix
    movs r1, #3
    lsls r2, r0, #2
    eors r0, r2
    orrs r0, r1
    subs r0, r0, r1
    cmp r0, r1
    bx lr
    .size m0_alu_mix, . - m0_alu_mix

/* m0_ldr_str: SUB SP 1; 2 x STR 2 = 4; 2 x LDR 2 = 4 (no load pipelining on the M0+);
 * ADD SP 1; BX 2; total 1 + 4 + 4 + 1 + 2 = 12 */
    FUNC m0_ldr_str
    sub sp, #8
    str r0, [sp]
    str r0, [sp, #4]
    ldr r1, [sp]
    ldr r2, [sp, #4]
    add sp, #8
    bx lr
    .size m0_ldr_str, . - m0_ldr_str

/* m0_narrow: SUB SP 1; MOV r3, SP 1; STRB 2 + STRH 2; LDRB 2 + LDRH 2; ADD SP 1; BX 2;
 * total 1 + 1 + 4 + 4 + 1 + 2 = 13 */
    FUNC m0_narrow
    sub sp, #8
    mov r3, sp
    strb r0, [r3]
    strh r0, [r3, #2]
    ldrb r1, [r3]
    ldrh r2, [r3, #2]
    add sp, #8
    bx lr
    .size m0_narrow, . - m0_narrow

/* m0_store_reg: SUB SP 1; MOVS 1; MOV r2, SP 1; STR reg-offset 2; LDR reg-offset 2;
 * ADD SP 1; BX 2; total 1 + 1 + 1 + 2 + 2 + 1 + 2 = 10 */
    FUNC m0_store_reg
    sub sp, #8
    movs r1, #4
    mov r2, sp
    str r0, [r2, r1]
    ldr r0, [r2, r1]
    add sp, #8
    bx lr
    .size m0_store_reg, . - m0_store_reg

/* m0_push_pop4: PUSH {r4-r7} 1 + 4 = 5; POP {r4-r7} 1 + 4 = 5; BX 2; total 12 */
    FUNC m0_push_pop4
    push {r4-r7}
    pop {r4-r7}
    bx lr
    .size m0_push_pop4, . - m0_push_pop4

/* m0_push_pop1: PUSH {r4} 1 + 1 = 2; POP {r4} 2; BX 2; total 6 */
    FUNC m0_push_pop1
    push {r4}
    pop {r4}
    bx lr
    .size m0_push_pop1, . - m0_push_pop1

/* m0_pop_pc: PUSH {r4, lr} 1 + 2 = 3; MOVS 1; POP {r4, pc} 3 + N(2) = 5 (the return);
 * total 3 + 1 + 5 = 9 */
    FUNC m0_pop_pc
    push {r4, lr}
    movs r0, #0
    pop {r4, pc}
    .size m0_pop_pc, . - m0_pop_pc

/* m0_ldm_stm: SUB SP 1; MOV r1, SP 1; STM r1!, {r0, r2, r3} 1 + 3 = 4; MOV r1, SP 1;
 * LDM r1!, {r0, r2, r3} 1 + 3 = 4; ADD SP 1; BX 2; total 1 + 1 + 4 + 1 + 4 + 1 + 2 = 14 */
    FUNC m0_ldm_stm
    sub sp, #16
    mov r1, sp
    stm r1!, {r0, r2, r3}
    mov r1, sp
    ldm r1!, {r0, r2, r3}
    add sp, #16
    bx lr
    .size m0_ldm_stm, . - m0_ldm_stm

/* m0_loop(n): MOVS 1; per iteration ADDS 1 + SUBS 1 + BNE (2 taken, 1 on the last);
 * BX 2.  total = 1 + 4 (n - 1) + 3 + 2 = 4n + 2: n = 1 -> 6, n = 10 -> 42 */
    FUNC m0_loop
    movs r1, #0
1:  adds r1, r1, #1
    subs r0, r0, #1
    bne 1b
    bx lr
    .size m0_loop, . - m0_loop

/* m0_bcond(x): CMP 1; BEQ: x == 0 taken 2 -> BX 2: total 5;
 * x != 0 not taken 1 -> 2 x ADDS 2 -> BX 2: total 1 + 1 + 2 + 2 = 6 */
    FUNC m0_bcond
    cmp r0, #0
    beq 1f
    adds r0, r0, #1
    adds r0, r0, #1
1:  bx lr
    .size m0_bcond, . - m0_bcond

/* m0_branch: MOVS 1; B 2; (skipped MOVS); ADDS 1; BX 2; total 6 */
    FUNC m0_branch
    movs r0, #0
    b 1f
    movs r0, #7
1:  adds r0, r0, #1
    bx lr
    .size m0_branch, . - m0_branch

/* m0_call: PUSH {lr} 1 + 1 = 2; BL 3; leaf: ADDS 1 + BX 2 = 3; POP {pc} 3 + 1 = 4;
 * total 2 + 3 + 3 + 4 = 12 */
    FUNC m0_call
    push {lr}
    bl m0_leaf
    pop {pc}
    .size m0_call, . - m0_call

    FUNC m0_leaf
    adds r0, r0, #1
    bx lr
    .size m0_leaf, . - m0_leaf

/* m0_extend: SXTB 1 + UXTH 1 + REV 1 + REV16 1 = 4; BX 2; total 6 */
    FUNC m0_extend
    sxtb r1, r0
    uxth r2, r0
    rev r0, r1
    rev16 r0, r2
    bx lr
    .size m0_extend, . - m0_extend

/* m0_muls: MOVS 1; 4 x MULS (1 fast / 32 small); BX 2.
 * fast: 1 + 4 + 2 = 7; small multiplier: 1 + 4 x 32 + 2 = 131 */
    FUNC m0_muls
    movs r1, #3
    muls r0, r1, r0
    muls r0, r1, r0
    muls r0, r1, r0
    muls r0, r1, r0
    bx lr
    .size m0_muls, . - m0_muls

/* m0_mul_loop(n): MOVS 1 + MOVS 1; per iteration MULS (1 or 32) + SUBS 1 + BNE (2 taken,
 * 1 on the last); MOVS 1; BX 2.  fast: 2 + (4n - 1) + 1 + 2 = 4n + 4 (n = 10 -> 44);
 * small: 4n + 4 + 31n = 35n + 4 (n = 10 -> 354); 31 more per MULS executed */
    FUNC m0_mul_loop
    movs r1, #3
    movs r2, #1
1:  muls r2, r1, r2
    subs r0, r0, #1
    bne 1b
    movs r0, r2
    bx lr
    .size m0_mul_loop, . - m0_mul_loop

/*
 * The System Control Space (mcusim/scs.py): SysTick, every Cortex-M's timer.
 * systick_probe: RVR = 0xFFFFFF, CVR = 0, CSR = ENABLE | CLKSOURCE (processor clock), then
 * c0 = CVR; 4 x ADDS; c1 = CVR; return c0 - c1 (the counter counts down once per cycle).
 * c0 - c1 = the cycles from the first CVR load up to the second: LDR 2 + 4 x ADDS 1 = 6 */
    FUNC systick_probe
    ldr r1, =0xE000E010
    ldr r2, =0x00FFFFFF
    str r2, [r1, #4]
    movs r2, #0
    str r2, [r1, #8]
    movs r2, #5
    str r2, [r1]
    ldr r2, [r1, #8]
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    ldr r3, [r1, #8]
    subs r0, r2, r3
    bx lr
    .ltorg
    .size systick_probe, . - systick_probe
