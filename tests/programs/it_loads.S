/*
 * IT blocks that end in a conditional load (tests/test_it_block_hooks.py).
 *
 * Unicorn 2.1.4 with a UC_HOOK_MEM_READ covering the loaded address leaves the IT state
 * set after such a block and mis-executes the instruction after it (upstream unicorn
 * issue 2309): results change, or the next block faults as an invalid instruction.  Every
 * function here runs a loop whose IT condition alternates (taken on odd i, not taken on
 * even i), so both ways of every block run; the result is compared with an unhooked run of
 * plain Unicorn.
 *
 * Signature of every it_* function (AAPCS): r0 = n iterations (>= 1), r1 = source (flash
 * or SRAM, >= 64 bytes, readable at any offset used below), r2 = destination (n words,
 * SRAM).  dst[i] = the running checksum after iteration i; returns the final checksum.
 */
    .syntax unified
    .thumb
    .text

/* LOOP name, load...: the IT block is `it ne` + the load(s) given; r4 (and r5) hold what
 * was loaded (0 when the condition failed).  Then the checksum update, the store and the
 * loop test: the block after the IT block starts with `adds`, as in the loop that showed
 * the bug first. */
    .macro LOOP name, it, l1, l2=
    .global \name
    .thumb_func
    .type \name, %function
\name:
    push {r4-r8, lr}
    movs r3, #0          @ checksum
    movs r6, #0          @ i
1:  movs r4, #0
    movs r5, #0
    ands r7, r6, #1
    cmp r7, #0
    \it
    \l1
    \l2
    adds r3, r3, #1
    add r3, r3, r4
    eor r3, r3, r5, ror #7
    str r3, [r2, r6, lsl #2]
    adds r6, r6, #1
    cmp r6, r0
    blt 1b
    mov r0, r3
    pop {r4-r8, pc}
    .ltorg
    .size \name, . - \name
    .endm

    LOOP it_ldr_reg, "it ne", "ldrne r4, [r1, r6, lsl #2]"
    LOOP it_ldr_imm, "it ne", "ldrne r4, [r1, #4]"
    LOOP it_ldr_w, "it ne", "ldrne.w r4, [r1, #44]"
    LOOP it_ldrb, "it ne", "ldrbne r4, [r1, r6]"
    LOOP it_ldrh, "it ne", "ldrhne r4, [r1, #6]"
    LOOP it_ldrsh, "it ne", "ldrshne.w r4, [r1, #10]"
    LOOP it_ldrd, "it ne", "ldrdne r4, r5, [r1, #8]"
    LOOP it_ldm, "it ne", "ldmne r1, {r4, r5}"
    LOOP it_ldr_post, "it ne", "ldrne r4, [r1], #4"
    LOOP it_ite, "ite ne", "ldrne r4, [r1, #12]", "ldreq r4, [r1, #16]"
    LOOP it_itt, "itt ne", "addne r4, r6, #1", "ldrne r4, [r1, r4, lsl #2]"
    LOOP it_lit, "it ne", "ldrne r4, =0x5a5a1234"
    LOOP it_lit_w, "it ne", "ldrne.w r4, =0x0badcafe"
    LOOP it_ldrd_lit, "it ne", "ldrdne r4, r5, lit_pair"

/* A literal pair for it_ldrd_lit (PC-relative LDRD). */
    .balign 8
lit_pair:
    .word 0x13579bdf, 0x2468ace0

/* The loop head, the block entered after the IT block by the backward branch, starts
 * with an instruction that is not allowed inside an IT block (CBZ; IT): with the IT state
 * wrongly left set, Unicorn faults on it as an invalid instruction. */
    .macro HEADLOOP name, head, it, l1
    .global \name
    .thumb_func
    .type \name, %function
\name:
    push {r4-r8, lr}
    movs r3, #0
    movs r6, #0
1:  \head
    movs r4, #0
    ands r7, r6, #1
    cmp r7, #0
    \it
    \l1
    adds r3, r3, #1
    add r3, r3, r4
    str r3, [r2, r6, lsl #2]
    adds r6, r6, #1
    cmp r6, r0
    blt 1b
9:  mov r0, r3
    pop {r4-r8, pc}
    .ltorg
    .size \name, . - \name
    .endm

    HEADLOOP it_then_cbz, "cbz r0, 9f", "it ne", "ldrne r4, [r1, #20]"
    HEADLOOP it_lit_then_cbz, "cbz r0, 9f", "it ne", "ldrne r4, =0x00c0ffee"
    HEADLOOP it_then_it, "it eq; moveq r3, #7", "it ne", "ldrne r4, [r1, #24]"
    HEADLOOP it_then_b, "b.n 2f; 2:", "it ne", "ldrne r4, [r1, #28]"
    HEADLOOP it_then_bl, "bl it_leaf", "it ne", "ldrne r4, [r1, #32]"

    .thumb_func
it_leaf:
    bx lr

/* Every addressing form of the load/store address mechanism, no IT block: the addresses
 * it computes are compared with a read/write hook's (tests/test_it_block_hooks.py).
 * r0 = n, r1 = source (>= 96 bytes), r2 = destination (>= 64 bytes). */
    .global all_forms
    .thumb_func
    .type all_forms, %function
all_forms:
    push {r4-r8, lr}
    sub sp, #16
    movs r3, #0
    movs r6, #1
    ldr r4, [r1, r6, lsl #2]
    add r3, r3, r4
    ldrb r4, [r1, r6]
    add r3, r3, r4
    ldrsb.w r4, [r1, #3]
    add r3, r3, r4
    ldrh r4, [r1, #2]
    add r3, r3, r4
    ldrd r4, r5, [r1, #16]
    add r3, r3, r4
    add r3, r3, r5
    mov r7, r1
    ldr r4, [r7], #4
    add r3, r3, r4
    ldr r4, [r7, #4]!
    add r3, r3, r4
    ldr r4, [r7, #-4]
    add r3, r3, r4
    ldm r7!, {r4, r5}
    add r3, r3, r4
    add r3, r3, r5
    ldmdb r7!, {r4, r5, r8}
    add r3, r3, r8
    ldr r4, 5f
    add r3, r3, r4
    ldr.w r4, 5f
    add r3, r3, r4
    ldrd r4, r5, 6f
    add r3, r3, r5
    ldrex r4, [r2]
    add r3, r3, r4
    str r3, [r2, #4]
    strb r3, [r2, #9]
    strh r3, [r2, #10]
    strd r3, r4, [r2, #16]
    stm r2, {r3, r4}
    str r3, [sp, #4]
    ldr r4, [sp, #4]
    add r3, r3, r4
    and r5, r0, #3
    tbb [pc, r5]
7:  .byte 2, 3, 4, 5
    adds r3, r3, #1
    adds r3, r3, #2
    adds r3, r3, #4
    adds r3, r3, #8
    and r5, r0, #1
    adr r7, 8f
    tbh [r7, r5, lsl #1]
    .balign 4
8:  .hword 2, 3
    adds r3, r3, #16
    adds r3, r3, #32
    mov r0, r3
    add sp, #16
    pop {r4-r8, pc}
    .balign 4
5:  .word 0x01020304
    .balign 8
6:  .word 0x11111111, 0x22222222
    .size all_forms, . - all_forms

/* The FPU forms (VLDR/VSTR of S and D registers, VLDM/VSTM, VPUSH/VPOP, a PC-relative
 * VLDR): r0 = n, r1 = source (>= 96 bytes), r2 = destination (>= 64 bytes). */
    .fpu fpv4-sp-d16
    .global vfp_forms
    .thumb_func
    .type vfp_forms, %function
vfp_forms:
    vpush {s16-s17}
    vpush {d9}
    vldr s0, [r1, #4]
    vldr d1, [r1, #16]
    vldr s2, 10f
    vldr d2, 11f
    mov r3, r1
    vldmia r3!, {s4-s7}
    vldmdb r3!, {d4-d5}
    add r3, r1, r0, lsl #3
    vldr d6, [r3]
    vstr s0, [r2]
    vstr d1, [r2, #8]
    vstmia r2, {s4-s5}
    add r3, r2, #32
    vstmdb r3!, {d2, d3}
    vmov r0, s4
    vpop {d9}
    vpop {s16-s17}
    bx lr
    .balign 4
10: .word 0x3f800000
    .balign 8
11: .word 0, 0x40000000
    .size vfp_forms, . - vfp_forms

/* An IT block split by a page boundary (1 KB and 4 KB pages alike): Unicorn ends the
 * translation block after the load, inside the IT block, and the next block starts with a
 * legitimate IT state (ADDNE) that the IT-state guard must leave alone.  Same signature as
 * the it_* loops. */
    .text
    .balign 4096
    .skip 4096 - 20
    .global it_across_page
    .thumb_func
    .type it_across_page, %function
it_across_page:
    push {r4-r7, lr}
    movs r3, #0
    movs r6, #0
1:  movs r4, #0
    movs r7, #1
    ands r7, r6
    cmp r7, #0
    nop
    itt ne
    ldrne r4, [r1, #36]
    addne r3, #100       @ the first instruction of the next page
    adds r3, #1
    add r3, r4
    lsls r5, r6, #2
    str r3, [r2, r5]
    adds r6, #1
    cmp r6, r0
    blt 1b
    mov r0, r3
    pop {r4-r7, pc}
    .size it_across_page, . - it_across_page
