/*
 * Cortex-M4 timing microbenchmarks (conformance suite, tests/test_timing_conformance.py).
 * Each function states its expected cycle count and the derivation from the Cortex-M4
 * TRM (DDI 0439D) Table 3-1 / §3.3.2 / Table 7-1 in its comment.  The return is `bx lr`
 * to the test harness's return address: a word-aligned 16-bit instruction, so
 * BX = 1 + P = 2 cycles.
 */
    .syntax unified
    .thumb
    .text

/* alu_chain: 4 x ADDS (1 each) + BX LR (1 + P = 2) = 6 */
    .global alu_chain
    .type alu_chain, %function
    .thumb_func
    .balign 4
alu_chain:
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    bx lr
    .size alu_chain, . - alu_chain

    .macro FUNC name
    .global \name
    .type \name, %function
    .thumb_func
    .balign 4
\name:
    .endm

/*
 * Loads and stores (TRM §3.3.2).  They address a scratch area just below the SP, which no
 * instruction of the function writes, so the address-generation stall never applies.
 * LDR 2; STR [Rn, #imm] 1; STR [Rn, Rm] 2; an LDR/STR right after an LDR whose result it
 * does not use for its address costs 1 less (never below 1); nothing pipelines after a
 * store, and a load right after an immediate-offset store costs one more (the store's data
 * phase overlaps the next instruction and holds the bus: TRM §3.3.2 "the data store is
 * performed at the same time as the next instruction is executing"; measured on an
 * STM32F407 by jnk0le, "stores cannot be pipelined with following load instructions (adds
 * extra cycle)"; charged to the load); LDRD/STRD 3 and never pipelined.
 */

/* ldr_ldr: LDR 2; LDR pipelined 2 - 1 = 1; BX 2; total 5 */
    FUNC ldr_ldr
    ldr r2, [sp, #-8]
    ldr r3, [sp, #-4]
    bx lr
    .size ldr_ldr, . - ldr_ldr

/* ldr_x3: LDR 2; LDR 1; LDR 1 (TRM: "normally four cycles total"); BX 2; total 6 */
    FUNC ldr_x3
    ldr r1, [sp, #-12]
    ldr r2, [sp, #-8]
    ldr r3, [sp, #-4]
    bx lr
    .size ldr_x3, . - ldr_x3

/* ldr_str_reg: SUB 1; MOVS 1; NOP 1; LDR 2; STR [r1, r3] pipelined 2 - 1 = 1; BX 2;
 * total 1 + 1 + 1 + 2 + 1 + 2 = 8 */
    FUNC ldr_str_reg
    sub r1, sp, #16
    movs r3, #4
    nop
    ldr r2, [sp, #-8]
    str r2, [r1, r3]
    bx lr
    .size ldr_str_reg, . - ldr_str_reg

/* str_ldr: STR imm 1; LDR 2 + 1 (after a store: not pipelined, and it waits for the
 * store's data phase); BX 2; total 6 */
    FUNC str_ldr
    str r0, [sp, #-8]
    ldr r2, [sp, #-4]
    bx lr
    .size str_ldr, . - str_ldr

/* ldr_str_ldr: LDR 2; STR imm 1 (pipelined after the LDR: 1 is also its minimum); LDR 2 + 1
 * (after the store: not pipelined, waits for its data phase); BX 2; total 8 */
    FUNC ldr_str_ldr
    ldr r2, [sp, #-8]
    str r0, [sp, #-4]
    ldr r3, [sp, #-12]
    bx lr
    .size ldr_str_ldr, . - ldr_str_ldr

/* strreg_ldr: SUB 1; MOVS 1; NOP 1; STR [r1, r3] 2; LDR 2 (nothing pipelines after a
 * register-offset STR); BX 2; total 1 + 1 + 1 + 2 + 2 + 2 = 9 */
    FUNC strreg_ldr
    sub r1, sp, #16
    movs r3, #4
    nop
    str r0, [r1, r3]
    ldr r2, [sp, #-4]
    bx lr
    .size strreg_ldr, . - strreg_ldr

/* ldr_dep: MOV r2, SP 1; STR r2 1 (the address is SP, not r2: no stall); LDR r3 2 + 1
 * (after a store); LDR [r3] 2 (its address is the previous load's result: not pipelined);
 * BX 2; total 1 + 1 + 3 + 2 + 2 = 9 */
    FUNC ldr_dep
    mov r2, sp
    str r2, [sp, #-8]
    ldr r3, [sp, #-8]
    ldr r0, [r3, #-16]
    bx lr
    .size ldr_dep, . - ldr_dep

/* ldrd_neighbours: LDR 2; LDRD 3 (never pipelined); LDR 2 (after LDRD: not pipelined);
 * BX 2; total 9 */
    FUNC ldrd_neighbours
    ldr r0, [sp, #-4]
    ldrd r2, r3, [sp, #-16]
    ldr r1, [sp, #-8]
    bx lr
    .size ldrd_neighbours, . - ldrd_neighbours

/* strd_ldr: STRD 3; LDR 2; STR 1; BX 2; total 8 */
    FUNC strd_ldr
    strd r0, r1, [sp, #-16]
    ldr r2, [sp, #-16]
    str r2, [sp, #-4]
    bx lr
    .size strd_ldr, . - strd_ldr

/* agu_stall: ADD r3 1; ADD r2, SP 1; LDR [r2] 2 + 1 address-generation stall (r2 is the
 * result of the data-processing instruction right before); BX 2; total 7 */
    FUNC agu_stall
    adds r3, r3, #1
    sub r2, sp, #8
    ldr r0, [r2]
    bx lr
    .size agu_stall, . - agu_stall

/* agu_nostall: the same three instructions, the independent ADD moved between:
 * SUB 1; ADDS 1; LDR 2 (no stall); BX 2; total 6 */
    FUNC agu_nostall
    sub r2, sp, #8
    adds r3, r3, #1
    ldr r0, [r2]
    bx lr
    .size agu_nostall, . - agu_nostall

/* IT folding (Table 3-1 note d). */
/* it_after16: CMP (16-bit) 1; IT folded 0; MOV 1; BX 2; total 4 */
    FUNC it_after16
    cmp r0, #0
    it eq
    moveq r0, #5
    bx lr
    .size it_after16, . - it_after16

/* it_after32: CMP.W (32-bit) 1; IT 1 (not folded); MOV 1; BX 2; total 5 */
    FUNC it_after32
    cmp.w r0, #0
    it eq
    moveq r0, #5
    bx lr
    .size it_after32, . - it_after32

/* Multiple transfers: 1 + N, never pipelined. */
/* push_pop4: PUSH {r4-r7} 5; POP {r4-r7} 5; BX 2; total 12 */
    FUNC push_pop4
    push {r4-r7}
    pop {r4-r7}
    bx lr
    .size push_pop4, . - push_pop4

/* push_pop8: PUSH {r4-r11} 1 + 8 = 9 (TRM: "an eight element store takes nine cycles");
 * POP 9; BX 2; total 20 */
    FUNC push_pop8
    push {r4-r11}
    pop {r4-r11}
    bx lr
    .size push_pop8, . - push_pop8

/* ldm_stm3: SUB r1 1; NOP 1; STM r1, {r0, r2, r3} 1 + 3 = 4; LDM r1, {r0, r2, r3} 4;
 * BX 2; total 1 + 1 + 4 + 4 + 2 = 12 */
    FUNC ldm_stm3
    sub r1, sp, #16
    nop
    stm r1, {r0, r2, r3}
    ldm r1, {r0, r2, r3}
    bx lr
    .size ldm_stm3, . - ldm_stm3

/* pop_pc: PUSH {r4-r6, lr} 1 + 4 = 5; MOVS 1; POP {r4-r6, pc} 1 + 4 + P(1) = 6 (the
 * return: to a word-aligned 16-bit instruction); total 12 */
    FUNC pop_pc
    push {r4-r6, lr}
    movs r0, #0
    pop {r4-r6, pc}
    .size pop_pc, . - pop_pc

/* Branches: B 1 + P, B<cc> 1 not taken / 1 + P taken, BL 1 + P, BX 1 + P; P = 1, plus 1 when
 * the target is a 32-bit instruction at an address = 2 mod 4. */

/* loop(n): MOVS 1; per iteration ADDS 1 + SUBS 1 + BNE (1 + P = 2 taken, to a 16-bit
 * target; 1 on the last); BX 2.  total 1 + 4 (n - 1) + 3 + 2 = 4n + 2: 1 -> 6, 10 -> 42 */
    FUNC loop
    movs r1, #0
1:  adds r1, r1, #1
    subs r0, r0, #1
    bne 1b
    bx lr
    .size loop, . - loop

/* br_wide_odd: B.N 1 + P(1) + 1 (target ADD.W at offset 6 = 2 mod 4) = 3; ADD.W 1; BX 2;
 * total 6 */
    FUNC br_wide_odd
    b.n 1f
    nop
    nop
1:  add.w r0, r0, #1
    bx lr
    .size br_wide_odd, . - br_wide_odd

/* br_wide_even: B.N 1 + P(1) = 2 (ADD.W at offset 4: word aligned); ADD.W 1; BX 2; total 5 */
    FUNC br_wide_even
    b.n 1f
    nop
1:  add.w r0, r0, #1
    bx lr
    .size br_wide_even, . - br_wide_even

/* br_narrow_odd: B.N 1 + P(1) = 2 (16-bit ADDS at offset 6: no extra cycle); ADDS 1;
 * BX 2; total 5 */
    FUNC br_narrow_odd
    b.n 1f
    nop
    nop
1:  adds r0, r0, #1
    bx lr
    .size br_narrow_odd, . - br_narrow_odd

/* call: PUSH {lr} 1 + 1 = 2; BL 1 + P = 2 (leaf starts word aligned, 16-bit); leaf: ADDS 1,
 * BX 1 + P = 2 (back to the 16-bit POP); POP {pc} 1 + 1 + P = 3; total 2 + 2 + 3 + 3 = 10 */
    FUNC call
    push {lr}
    bl leaf
    pop {pc}
    .size call, . - call

    FUNC leaf
    adds r0, r0, #1
    bx lr
    .size leaf, . - leaf

/* Divides (Table 3-1 "2 to 12", cortex_m4.toml parameters.divide): 2 if an operand is 0;
 * 3 if bits(n) < bits(d); else 5 + floor((bits(n) - bits(d)) / 4), at most 12 (signed:
 * magnitudes).  udiv(n, d) / sdiv(n, d): DIV + BX 2.
 *   udiv(100, 7): bits 7 - 3 = 4 -> 5 + 1 = 6; total 8
 *   udiv(7, 7): 3 - 3 = 0 -> 5; total 7
 *   udiv(3, 100): 2 < 7 -> 3; total 5
 *   udiv(0, 5) and udiv(5, 0): 2; total 4
 *   udiv(0xFFFFFFFF, 1): 32 - 1 = 31 -> 5 + 7 = 12; total 14
 *   udiv(0x10000, 3): 17 - 2 = 15 -> 5 + 3 = 8; total 10
 *   sdiv(-100, 7): |-100| = 100: 6; total 8
 *   sdiv(1000, -3): 10 - 2 = 8 -> 5 + 2 = 7; total 9 */
    FUNC udiv_f
    udiv r0, r0, r1
    bx lr
    .size udiv_f, . - udiv_f

    FUNC sdiv_f
    sdiv r0, r0, r1
    bx lr
    .size sdiv_f, . - sdiv_f

/* mul_mix: MUL 1 + MLA 1 + MLS 1 + SMULL 1 + UMLAL 1 (Table 3-1, all single cycle on the
 * M4); BX 2; total 7 */
    FUNC mul_mix
    mul r2, r0, r1
    mla r2, r0, r1, r2
    mls r3, r0, r1, r2
    smull r2, r3, r0, r1
    umlal r2, r3, r0, r1
    bx lr
    .size mul_mix, . - mul_mix

/* dsp_mix: SMLAD 1 + SADD16 1 + USAT 1 + UQADD8 1 + SMULBB 1 + PKHBT 1 (Table 3-2: every
 * DSP instruction 1); BX 2; total 8 */
    FUNC dsp_mix
    smlad r2, r0, r1, r2
    sadd16 r3, r0, r1
    usat r0, #8, r3
    uqadd8 r1, r1, r2
    smulbb r2, r0, r1
    pkhbt r0, r2, r3, lsl #16
    bx lr
    .size dsp_mix, . - dsp_mix

/* bitfield_mix: UBFX 1 + BFI 1 + CLZ 1 + RBIT 1 + UXTB 1; BX 2; total 7 */
    FUNC bitfield_mix
    ubfx r1, r0, #4, #8
    bfi r0, r1, #8, #4
    clz r2, r0
    rbit r3, r2
    uxtb r0, r3
    bx lr
    .size bitfield_mix, . - bitfield_mix

/* FPU (Table 7-1 and its notes): VMOV core<->S 2; VMOV S,S and VMOV #imm 1; VADD/VMUL/VCVT
 * 1; VMLA 3; VDIV/VSQRT 14; VLDR/VSTR 2; +1 when the next instruction consumes the result
 * of an FP arithmetic instruction (a MAC's addend is consumed late: no stall). */

/* fp_indep: VMOV s0 2; VMOV s1 2; VADD s2 1; VMUL s3 (does not read s2) 1;
 * VMOV r0, s2 (reads s2, not s3 written right before) 2; BX 2; total 10 */
    FUNC fp_indep
    vmov s0, r0
    vmov s1, r1
    vadd.f32 s2, s0, s1
    vmul.f32 s3, s0, s1
    vmov r0, s2
    bx lr
    .size fp_indep, . - fp_indep

/* fp_stall: VMOV 2; VMOV 2; VADD s2 1; VMUL s3, s2 1 + 1 (consumes the VADD result);
 * VMOV r0, s3 2 + 1 (consumes the VMUL result); BX 2; total 2 + 2 + 1 + 2 + 3 + 2 = 12 */
    FUNC fp_stall
    vmov s0, r0
    vmov s1, r1
    vadd.f32 s2, s0, s1
    vmul.f32 s3, s2, s1
    vmov r0, s3
    bx lr
    .size fp_stall, . - fp_stall

/* fp_vmla: VMOV 2; VMOV 2; VMOV s2, s0 1; VMLA s2 3 (the addend s2 comes from a VMOV, not
 * arithmetic); VMLA s2 3 (chained addend: consumed late, no stall); VMOV r0, s2 2 + 1;
 * BX 2; total 2 + 2 + 1 + 3 + 3 + 3 + 2 = 16 */
    FUNC fp_vmla
    vmov s0, r0
    vmov s1, r1
    vmov.f32 s2, s0
    vmla.f32 s2, s0, s1
    vmla.f32 s2, s0, s1
    vmov r0, s2
    bx lr
    .size fp_vmla, . - fp_vmla

/* fp_div_sqrt: VMOV 2; VMOV 2; VDIV s2 14; VSQRT s3, s0 14 (does not read s2); VMOV r0, s3
 * 2 + 1; BX 2; total 2 + 2 + 14 + 14 + 3 + 2 = 37 */
    FUNC fp_div_sqrt
    vmov s0, r0
    vmov s1, r1
    vdiv.f32 s2, s0, s1
    vsqrt.f32 s3, s0
    vmov r0, s3
    bx lr
    .size fp_div_sqrt, . - fp_div_sqrt

/* fp_ldst: VLDR 2; VLDR 2 (VLDR.32 is 2 in Table 7-1); VADD 1; VSTR of the VADD result
 * 2 + 1; BX 2; total 2 + 2 + 1 + 3 + 2 = 10 */
    FUNC fp_ldst
    vldr s0, [sp, #-8]
    vldr s1, [sp, #-4]
    vadd.f32 s2, s0, s1
    vstr s2, [sp, #-12]
    bx lr
    .size fp_ldst, . - fp_ldst

/* fp_vmov: VMOV s0, #1.0 1; VMOV s1, s0 1; VMOV r0, s1 2; BX 2; total 6 */
    FUNC fp_vmov
    vmov.f32 s0, #1.0
    vmov.f32 s1, s0
    vmov r0, s1
    bx lr
    .size fp_vmov, . - fp_vmov

/* fp_cvt: VMOV s0, r0 2; VCVT.F32.S32 s0 1 + 1 (next consumes s0); VCVT.S32.F32 s1, s0
 * 1 + 1; VMOV r0, s1 2; BX 2; total 2 + 2 + 2 + 2 + 2 = 10 */
    FUNC fp_cvt
    vmov s0, r0
    vcvt.f32.s32 s0, s0
    vcvt.s32.f32 s1, s0
    vmov r0, s1
    bx lr
    .size fp_cvt, . - fp_cvt

/*
 * Round 2 of the load/store rules (cortex_m4.toml parameters store_load_stall,
 * indexed_store_chain, literal_load_contention; class ldm_pc).
 */

/* str_str_post: SUB r1 1; NOP 1; STR r0, [r1], #4 1; STR r0, [r1], #4 1 + 1 (a post-indexed
 * store right after one on the same base: jnk0le, STM32F407, "post and pre indexed stores
 * cannot be chained back to back on same register base address"); BX 2; total 7 */
    FUNC str_str_post
    sub r1, sp, #16
    nop
    str r0, [r1], #4
    str r0, [r1], #4
    bx lr
    .size str_str_post, . - str_str_post

/* str_str_alt: SUB r1 1; SUB r2 1; NOP 1; STR r0, [r1], #4 1; STR r0, [r2], #4 1 (two bases
 * alternate: "alternating 2 different registers works"); BX 2; total 7 */
    FUNC str_str_alt
    sub r1, sp, #16
    sub r2, sp, #32
    nop
    str r0, [r1], #4
    str r0, [r2], #4
    bx lr
    .size str_str_alt, . - str_str_alt

/* str_ldm: SUB r1 1; NOP 1; STR r0, [sp, #-4] 1; LDM r1, {r2, r3} 1 + 2 + 1 (a load multiple
 * after a store: jnk0le, "stores can't be pipelined with following load multiple"); BX 2;
 * total 9 */
    FUNC str_ldm
    sub r1, sp, #16
    nop
    str r0, [sp, #-4]
    ldm r1, {r2, r3}
    bx lr
    .size str_ldm, . - str_ldm

/* literal: LDR r0, [PC, #imm] 2 + 1 (TRM §3.3.2: "LDR Rx,[PC,#imm] might add a cycle because
 * of contention with the fetch unit", taken as always); NOP 1; BX 2; total 6 */
    FUNC literal
    ldr r0, 1f
    nop
    bx lr
    .balign 4
1:  .word 0x12345678
    .size literal, . - literal

/* ldr_pc_return: PUSH {lr} 1 + 1 = 2; MOVS 1; LDR PC, [SP], #4 (gcc's single-register
 * return: POP {PC} in its T3 encoding, timed as POP {PC}) 1 + 1 + P(1) = 3; total 6
 * (as LDR PC it would be >= 5: the class load_pc) */
    FUNC ldr_pc_return
    push {lr}
    movs r0, #1
    ldr pc, [sp], #4
    .size ldr_pc_return, . - ldr_pc_return

/*
 * Unaligned accesses (TRM §3.3.2: "A byte aligned halfword load or store adds one extra
 * cycle ... A halfword aligned word load or store adds one extra cycle ... A byte-aligned
 * word load or store adds two extra cycles").  The address is SP - 64 + off, formed in a
 * first block and used in the next one, where it is a register at block entry (the tracer
 * follows it: mcusim/trace/access.py).  Costs: SUB 1; ADD 1; B 1 + P(1) = 2; then
 */
/* unal_ldr(off): LDR 2 (+1 when off = 2 mod 4, +2 when off is odd); BX 2; total 8 + pen */
    FUNC unal_ldr
    sub r1, sp, #64
    add r1, r0
    b 1f
1:  ldr r2, [r1]
    bx lr
    .size unal_ldr, . - unal_ldr

/* unal_ldrh(off): LDRH 2 (+1 when off is odd); BX 2; total 8 + pen */
    FUNC unal_ldrh
    sub r1, sp, #64
    add r1, r0
    b 1f
1:  ldrh r2, [r1]
    bx lr
    .size unal_ldrh, . - unal_ldrh

/* unal_str(off): STR 1 (+1 when off = 2 mod 4, +2 when off is odd); BX 2; total 7 + pen */
    FUNC unal_str
    sub r1, sp, #64
    add r1, r0
    b 1f
1:  str r2, [r1]
    bx lr
    .size unal_str, . - unal_str

/* unal_post(off): a post-indexed walk the tracer follows through the block: LDR r2, [r1],
 * #1 2; LDR r3, [r1], #1 2 (its base is the previous load's writeback: not pipelined); BX
 * 2: total 4 + 6 = 10, plus the penalties of addresses base+0 and base+1: one of the two
 * is odd (+2) and the other (+0 or +1): off = 0: +0 +2; off = 1: +2 +1; off = 2: +1 +2 */
    FUNC unal_post
    sub r1, sp, #64
    add r1, r0
    b 1f
1:  ldr r2, [r1], #1
    ldr r3, [r1], #1
    bx lr
    .size unal_post, . - unal_post

/* unal_unknown(off): the address is loaded from memory inside the block, so the tracer
 * cannot follow it: STR r1 1; LDR r3, [sp, #-8] 2 + 1 (after a store); LDR r2, [r3] 2 (its
 * address is the previous load's result: not pipelined; taken aligned and counted as not
 * followed); BX 2: total 4 + 8 = 12 whatever off */
    FUNC unal_unknown
    sub r1, sp, #64
    add r1, r0
    b 1f
1:  str r1, [sp, #-8]
    ldr r3, [sp, #-8]
    ldr r2, [r3]
    bx lr
    .size unal_unknown, . - unal_unknown

/*
 * The System Control Space (mcusim/scs.py): the firmware times itself with DWT CYCCNT.
 * dwt_probe: LDR r1, =0xE0001000 (literal); MOVS r2, #1; STR r2, [r1] (DWT_CTRL.CYCCNTENA);
 * LDR r2, [r1, #4] (t0); 4 x ADDS; LDR r3, [r1, #4] (t1); SUBS r0, r3, r2; BX LR.
 * t1 - t0 = the cycles from the first CYCCNT load up to the second: LDR 2 + 1 (right after
 * the STR: store_load_stall) + 4 x ADDS 1 = 7 */
    FUNC dwt_probe
    ldr r1, =0xE0001000
    movs r2, #1
    str r2, [r1]
    ldr r2, [r1, #4]
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    ldr r3, [r1, #4]
    subs r0, r3, r2
    bx lr
    .ltorg
    .size dwt_probe, . - dwt_probe

/* dwt_off: CYCCNT read without enabling it (DWT_CTRL resets with CYCCNTENA clear, and the
 * call before left it clear): the counter does not run: 0 - 0 = 0 */
    FUNC dwt_off
    ldr r1, =0xE0001000
    movs r2, #0
    str r2, [r1]
    ldr r2, [r1, #4]
    adds r0, r0, #1
    ldr r3, [r1, #4]
    subs r0, r3, r2
    bx lr
    .ltorg
    .size dwt_off, . - dwt_off

/* cpuid: LDR r1, =0xE000ED00; LDR r0, [r1]: the Cortex-M4's CPUID, 0x410FC241 (r0p1) */
    FUNC cpuid
    ldr r1, =0xE000ED00
    ldr r0, [r1]
    bx lr
    .ltorg
    .size cpuid, . - cpuid
