/*
 * Cortex-M7 timing microbenchmarks (conformance suite, tests/test_timing_conformance.py).
 * Run on the MIMXRT1062 (code in ITCM: core timing only).  Derivations follow the rules of
 * cost_models/cortex_m7.toml (LLVM ARMScheduleM7.td + jnk0le measurements):
 *   - up to 2 instructions issue per cycle, in order; an instruction issues when its sources
 *     are ready (producer's issue cycle + latency); load/store address registers and inputs
 *     of `early` classes (shifted operands) are needed one cycle earlier; MAC accumulators
 *     are read acc_advance cycles late; store data is read late;
 *   - it pairs with the previous instruction unless either is single-issue, it is slot-0-only
 *     (bitfield/DSP: older op only), the units do not fit (2 ALU, 1 shifter, 1 MAC, 2 load,
 *     1 store, 1 branch, 1 FP, 1 SIMD) or the pair is MAC + store;
 *   - latencies: ALU 1, MUL 2, LDR 1, LDRB/LDRH 2, VADD/VMUL 3, VMLA 6 (3 as the next
 *     MAC's accumulator), VMOV core->S 3, S->core 1; VDIV 16 occupancy; SDIV 7 single;
 *     LDM/STM/PUSH/POP ceil(N/2) cycles, single issue;
 *   - each basic block starts with an empty pipeline and ALL registers ready (so the first
 *     load of a block can issue in cycle 0), except that a block looping to itself starts
 *     with the ready times its previous iteration left; the block's cost is the cycle after
 *     its last issue; a correctly predicted branch costs only its slot, a mispredict 8 (6
 *     when the flags were set >= 3 cycles before the branch in its block);
 *   - prediction: a 2-bit counter per conditional branch, weakly not taken when first seen;
 *     the suite calls each function once to warm up from that state, then measures.
 * Cycle numbers below: "insn @c" = issues in cycle c.  The return `bx lr` is a predicted
 * return.  Memory operands address a scratch area below the SP.
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

/* m7_add_indep: 8 independent ADDS, two per cycle: @0 @0 @1 @1 @2 @2 @3 @3 (the second
 * round's r0..r3 were ready at 1); BX @4 (cycle 3 full); total 5 */
    FUNC m7_add_indep
    adds r0, r0, #1
    adds r1, r1, #1
    adds r2, r2, #1
    adds r3, r3, #1
    adds r0, r0, #1
    adds r1, r1, #1
    adds r2, r2, #1
    adds r3, r3, #1
    bx lr
    .size m7_add_indep, . - m7_add_indep

/* m7_add_dep: 8 dependent ADDS r0 (latency 1): @0 .. @7; BX pairs @7; total 8 */
    FUNC m7_add_dep
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    adds r0, r0, #1
    bx lr
    .size m7_add_dep, . - m7_add_dep

/* m7_ldr_add: 4 x (LDR + independent ADDS), each pair in one cycle (load + ALU unit):
 * @0 @0 @1 @1 @2 @2 @3 @3; BX @4; total 5 */
    FUNC m7_ldr_add
    ldr r2, [sp, #-8]
    adds r0, r0, #1
    ldr r3, [sp, #-4]
    adds r1, r1, #1
    ldr r12, [sp, #-12]
    adds r0, r0, #1
    ldr r2, [sp, #-16]
    adds r1, r1, #1
    bx lr
    .size m7_ldr_add, . - m7_ldr_add

/* m7_ldr_str: 4 x (LDR + STR of an unrelated register): load + store unit pair:
 * @0 @0 @1 @1 @2 @2 @3 @3; BX @4; total 5 */
    FUNC m7_ldr_str
    ldr r2, [sp, #-8]
    str r0, [sp, #-20]
    ldr r3, [sp, #-4]
    str r1, [sp, #-24]
    ldr r12, [sp, #-12]
    str r0, [sp, #-28]
    ldr r2, [sp, #-16]
    str r1, [sp, #-32]
    bx lr
    .size m7_ldr_str, . - m7_ldr_str

/* m7_two_stores: 4 STR, one store unit: @0 @1 @2 @3; BX pairs @3; total 4 */
    FUNC m7_two_stores
    str r0, [sp, #-4]
    str r1, [sp, #-8]
    str r2, [sp, #-12]
    str r3, [sp, #-16]
    bx lr
    .size m7_two_stores, . - m7_two_stores

/* m7_two_muls: 6 independent MUL, one MAC unit: @0 .. @5; BX pairs @5; total 6 */
    FUNC m7_two_muls
    mul r2, r0, r1
    mul r3, r0, r1
    mul r12, r0, r1
    mul r2, r0, r1
    mul r3, r0, r1
    mul r12, r0, r1
    bx lr
    .size m7_two_muls, . - m7_two_muls

/* m7_mul_str: 3 x (MUL + STR of an unrelated register): MAC + store never pair:
 * @0 @1 @2 @3 @4 @5; BX pairs @5; total 6 */
    FUNC m7_mul_str
    mul r2, r0, r1
    str r0, [sp, #-4]
    mul r3, r0, r1
    str r1, [sp, #-8]
    mul r12, r0, r1
    str r0, [sp, #-12]
    bx lr
    .size m7_mul_str, . - m7_mul_str

/* m7_dsp_older: 2 x (SADD16, ADDS, STRD): SADD16 @0 + ADDS @0 (DSP as the older op pairs);
 * STRD (single issue) @1; SADD16 @2 + ADDS @2; STRD @3; BX @4; total 5 */
    FUNC m7_dsp_older
    sadd16 r2, r0, r1
    adds r3, r3, #1
    strd r0, r1, [sp, #-8]
    sadd16 r2, r0, r1
    adds r3, r3, #1
    strd r0, r1, [sp, #-16]
    bx lr
    .size m7_dsp_older, . - m7_dsp_older

/* m7_dsp_younger: 2 x (ADDS, SADD16, STRD): ADDS @0; SADD16 cannot be the younger op @1;
 * STRD @2; ADDS @3; SADD16 @4; STRD @5; BX @6; total 7 */
    FUNC m7_dsp_younger
    adds r3, r3, #1
    sadd16 r2, r0, r1
    strd r0, r1, [sp, #-8]
    adds r3, r3, #1
    sadd16 r2, r0, r1
    strd r0, r1, [sp, #-16]
    bx lr
    .size m7_dsp_younger, . - m7_dsp_younger

/* m7_shift_pairs: 4 independent ADD with a shifted operand, one shifter: @0 @1 @2 @3
 * (inputs ready at block start); BX pairs @3; total 4 */
    FUNC m7_shift_pairs
    add r0, r0, r1, lsl #2
    add r2, r2, r1, lsl #2
    add r3, r3, r1, lsl #2
    add r12, r12, r1, lsl #2
    bx lr
    .size m7_shift_pairs, . - m7_shift_pairs

/* m7_ldr_use: 3 x (LDR r2; ADDS r0, r0, r2), load latency 1: LDR @0; ADD @1; LDR pairs @1;
 * ADD @2; LDR @2; ADD @3; BX pairs @3; total 4 */
    FUNC m7_ldr_use
    ldr r2, [sp, #-8]
    adds r0, r0, r2
    ldr r2, [sp, #-4]
    adds r0, r0, r2
    ldr r2, [sp, #-12]
    adds r0, r0, r2
    bx lr
    .size m7_ldr_use, . - m7_ldr_use

/* m7_ldrb_use: as m7_ldr_use with LDRB (latency 2): LDRB @0; ADD @2; LDRB pairs @2;
 * ADD @4; LDRB @4; ADD @6; BX pairs @6; total 7 */
    FUNC m7_ldrb_use
    ldrb r2, [sp, #-8]
    adds r0, r0, r2
    ldrb r2, [sp, #-4]
    adds r0, r0, r2
    ldrb r2, [sp, #-12]
    adds r0, r0, r2
    bx lr
    .size m7_ldrb_use, . - m7_ldrb_use

/* m7_load_chain: MOV r1, SP @0; STR r1 pairs @0 (data read late); LDR r2 @1; LDR [r2]:
 * r2 ready 2, needed a cycle early: @3; LDR [r3]: @5; BX pairs @5; total 6 */
    FUNC m7_load_chain
    mov r1, sp
    str r1, [sp, #-8]
    ldr r2, [sp, #-8]
    ldr r3, [r2, #-8]
    ldr r0, [r3, #-8]
    bx lr
    .size m7_load_chain, . - m7_load_chain

/* m7_push_pop8: PUSH {r4-r11} @0, ceil(8/2) = 4 cycles, SP ready @1; POP: SP needed a cycle
 * early (@2) but the pipe is busy until 4: @4, 4 cycles; BX @8; total 9 */
    FUNC m7_push_pop8
    push {r4-r11}
    pop {r4-r11}
    bx lr
    .size m7_push_pop8, . - m7_push_pop8

/* m7_push_pop3: PUSH {r4-r6} @0, 2 cycles; POP @2 (busy until 2; SP needed @2), 2 cycles;
 * BX @4; total 5 */
    FUNC m7_push_pop3
    push {r4-r6}
    pop {r4-r6}
    bx lr
    .size m7_push_pop3, . - m7_push_pop3

/* m7_push_pop1: PUSH {r4} @0, 1 cycle, writes SP back (base_update_latency 0: ready @0);
 * POP reads SP as its address, needed a cycle early: @1, 1 cycle; BX @2; total 3 */
    FUNC m7_push_pop1
    push {r4}
    pop {r4}
    bx lr
    .size m7_push_pop1, . - m7_push_pop1

/* m7_pop_pc: PUSH {r4, lr} @0 (1 cycle); MOVS @1 (after a single-issue op); POP {r4, pc}:
 * SP ready @1, needed a cycle early: @2, 1 cycle; a predicted return; total 3 */
    FUNC m7_pop_pc
    push {r4, lr}
    movs r0, #0
    pop {r4, pc}
    .size m7_pop_pc, . - m7_pop_pc

/* m7_loop(n): blocks [MOVS r1; ADDS r1; SUBS r0; BNE] = MOVS @0, ADDS r1 @1 (reads r1),
 * SUBS pairs @1, BNE reads the flags of SUBS @2: 3 cycles;
 * [ADDS; SUBS; BNE] = @0 @0 @1: 2 cycles; [BX] 1.  BNE is taken n-1 times, then not taken.
 * Its counter (one per branch: both blocks end in it): the warm-up call takes it from 1
 * (weakly not taken) to 2 (n >= 3: T T ... N ends at 2; n = 1: N takes it to 0), so in the
 * measured call only the exit mispredicts (n >= 3) or nothing does (n = 1).  The flags come
 * from SUBS one cycle before BNE: the penalty is 8.  No register is in flight at the
 * back-edge (ADDS and SUBS have latency 1 and issue before BNE): no carried latency.
 *   n = 1: 3 + 1 = 4
 *   n = 3: 3 + 2 x 2 + 1 + 8 (the exit) = 16
 *   n = 10: 3 + 9 x 2 + 1 + 8 = 30 */
    FUNC m7_loop
    movs r1, #0
1:  adds r1, r1, #1
    subs r0, r0, #1
    bne 1b
    bx lr
    .size m7_loop, . - m7_loop

/* m7_call: [PUSH {r4, lr} @0 (1 cycle, single); BL @1] = 2; leaf [ADDS @0; BX pairs @0]
 * = 1; [POP {r4, pc} @0, ceil(2/2) = 1] = 1; calls and returns predicted; total 4 */
    FUNC m7_call
    push {r4, lr}
    bl m7_leaf
    pop {r4, pc}
    .size m7_call, . - m7_call

    FUNC m7_leaf
    adds r0, r0, #1
    bx lr
    .size m7_leaf, . - m7_leaf

/* m7_sdiv(n, d): SDIV @0, single issue, occupies 7 cycles (operands not used); BX @7;
 * total 8 */
    FUNC m7_sdiv
    sdiv r0, r0, r1
    bx lr
    .size m7_sdiv, . - m7_sdiv

/* m7_fp_chain: VMOV s0, r0 @0 (s0 ready @3); VADD s1 @3; VMUL s2, s1 @6; VMOV r0, s2 @9;
 * BX pairs @9; total 10 */
    FUNC m7_fp_chain
    vmov s0, r0
    vadd.f32 s1, s0, s0
    vmul.f32 s2, s1, s1
    vmov r0, s2
    bx lr
    .size m7_fp_chain, . - m7_fp_chain

/* m7_fp_indep: one FP unit: VMOV s0 @0; VMOV s1 @1; VADD s2, s0 @3; VADD s3, s1 @4;
 * VMOV r0, s2 @6; VMOV r1, s3 @7; BX pairs @7; total 8 */
    FUNC m7_fp_indep
    vmov s0, r0
    vmov s1, r1
    vadd.f32 s2, s0, s0
    vadd.f32 s3, s1, s1
    vmov r0, s2
    vmov r1, s3
    bx lr
    .size m7_fp_indep, . - m7_fp_indep

/* m7_vdiv: VMOV s0 @0; VMOV s1 @1; VDIV s2 @4 (s1 ready), 16 cycles; VMOV r0, s2 @20;
 * BX pairs @20; total 21 */
    FUNC m7_vdiv
    vmov s0, r0
    vmov s1, r1
    vdiv.f32 s2, s0, s1
    vmov r0, s2
    bx lr
    .size m7_vdiv, . - m7_vdiv

/* m7_vmla: VMOV s0 @0; VMOV s1 @1; VMLA s2 @4 (s1 ready @4); chained VMLA s2: accumulator
 * ready 4 + 6 - 3 = 7: @7; VMOV r0, s2: ready 7 + 6 = 13: @13; BX pairs @13; total 14 */
    FUNC m7_vmla
    vmov s0, r0
    vmov s1, r1
    vmla.f32 s2, s0, s1
    vmla.f32 s2, s0, s1
    vmov r0, s2
    bx lr
    .size m7_vmla, . - m7_vmla

/* ---- round 2 (cortex_m7.toml: load_to_mac, class_pair_exclusions, single_issue_forms,
 * preload, unaligned, bank_conflict, branch_prediction early flags, loop_carried) ---- */

/* m7_ldr_mul: LDR r2 @0 (latency 1); MUL r0, r2, r0 cannot use a load result of the
 * previous cycle (+1): r2 usable at 2, MUL @2; BX pairs @2; total 3 */
    FUNC m7_ldr_mul
    ldr r2, [sp, #-8]
    mul r0, r2, r0
    bx lr
    .size m7_ldr_mul, . - m7_ldr_mul

/* m7_vmla_vldr: VMLA @0; VLDR may not pair with a VMLA: @1; ADDS pairs @1; BX @2; total 3 */
    FUNC m7_vmla_vldr
    vmla.f32 s0, s1, s2
    vldr s3, [sp, #-8]
    adds r0, r0, #1
    bx lr
    .size m7_vmla_vldr, . - m7_vmla_vldr

/* m7_vldr64: ADDS @0; VLDR.64 issues alone @1; ADDS @2; BX pairs @2; total 3 */
    FUNC m7_vldr64
    adds r0, r0, #1
    vldr d1, [sp, #-16]
    adds r1, r1, #1
    bx lr
    .size m7_vldr64, . - m7_vldr64

/* m7_vmov_pair: ADDS @0; VMOV r2, r3, d0 issues alone @1; ADDS @2; BX pairs @2; total 3 */
    FUNC m7_vmov_pair
    adds r0, r0, #1
    vmov r2, r3, d0
    adds r1, r1, #1
    bx lr
    .size m7_vmov_pair, . - m7_vmov_pair

/* m7_pld_dep: MOV r1, SP @0 (latency 1); PLD [r1] is a load: its address is needed a cycle
 * early, r1 at 2: @2; BX pairs @2; total 3 */
    FUNC m7_pld_dep
    mov r1, sp
    pld [r1, #-32]
    bx lr
    .size m7_pld_dep, . - m7_pld_dep

/* m7_bank_same: LDR [sp, #-8] @0 and LDR [sp, #-16] pair @0 (two load slots) but both hit
 * the same 32-bit bank (offsets 8 apart: address bit 2 equal whatever SP): the younger one
 * waits a cycle (+1); BX @1; total 2 + 1 = 3 */
    FUNC m7_bank_same
    ldr r2, [sp, #-8]
    ldr r3, [sp, #-16]
    bx lr
    .size m7_bank_same, . - m7_bank_same

/* m7_bank_diff: the same with offsets 4 apart (different banks): total 2 */
    FUNC m7_bank_diff
    ldr r2, [sp, #-8]
    ldr r3, [sp, #-12]
    bx lr
    .size m7_bank_diff, . - m7_bank_diff

/* m7_unal_ldr(off): [SUB r1 @0; ADD r1, r0 @1 (needs r1); B pairs @1] = 2; [LDR [r1] @0;
 * BX pairs @0] = 1, plus 3 when SP - 64 + off is not word aligned (an unaligned load as
 * the older op); total 3 or 6 */
    FUNC m7_unal_ldr
    sub r1, sp, #64
    add r1, r0
    b 1f
1:  ldr r2, [r1]
    bx lr
    .size m7_unal_ldr, . - m7_unal_ldr

/* m7_early_flags(n): one block, a loop to itself: SUBS r0 @0, ADD.W r1 (no flags) pairs
 * @0, four dependent ADD.W r1 @1 @2 @3 @4, BNE pairs @4: 5 cycles; the flags were set 4 >= 3 cycles
 * before the BNE, so its mispredict costs 6; no register is in flight at the back-edge.
 * n = 3 (warm: only the exit mispredicts): 3 x 5 + 6 + [BX] 1 = 22 */
    FUNC m7_early_flags
1:  subs r0, r0, #1
    add.w r1, r1, #1
    add.w r1, r1, #1
    add.w r1, r1, #1
    add.w r1, r1, #1
    add.w r1, r1, #1
    bne 1b
    bx lr
    .size m7_early_flags, . - m7_early_flags

/* m7_carried(n): one block looping to itself: ADDS r1, r1, r2 @0; SUBS r0 pairs @0;
 * MUL r2 @1 (latency 2: r2 ready at 3); BNE pairs @1: 2 cycles from an empty pipeline.
 * Across the back-edge r2 is still 1 cycle away: the next iteration's ADDS waits to @1,
 * SUBS pairs @1, MUL @2 (r2 ready at 4 = end 3 + 1: the same carry), BNE @2: 3 cycles.
 * n = 3: 3 x 2 + 2 back-edges x 1 + the exit mispredict 8 (flags 1 cycle ahead) + [BX] 1
 * = 17 */
    FUNC m7_carried
1:  adds r1, r1, r2
    subs r0, r0, #1
    mul r2, r2, r2
    bne 1b
    bx lr
    .size m7_carried, . - m7_carried
