/* Loads and stores at a pointer argument, for the ARMv7-M alignment rules
 * (tests/test_alignment.py): LDRD/STRD, LDM/STM (16- and 32-bit, PUSH/POP-like STMDB/LDMIA
 * with write-back), LDREX and VLDR need a word-aligned address (else an UNALIGNED
 * UsageFault, whatever CCR.UNALIGN_TRP); LDR/STR/LDRH may be unaligned. */
    .syntax unified
    .thumb
    .text

/* uint32_t ldrd_sum(const uint32_t *p): p[0] + p[1] by one LDRD */
    .global ldrd_sum
    .type ldrd_sum, %function
    .thumb_func
ldrd_sum:
    ldrd r2, r3, [r0]
    adds r0, r2, r3
    bx lr
    .size ldrd_sum, . - ldrd_sum

/* uint32_t ldrd_sum8(const uint32_t *p): p[2] + p[3] by one LDRD [p, #8] */
    .global ldrd_sum8
    .type ldrd_sum8, %function
    .thumb_func
ldrd_sum8:
    ldrd r2, r3, [r0, #8]
    adds r0, r2, r3
    bx lr
    .size ldrd_sum8, . - ldrd_sum8

/* void strd_pair(uint32_t *p, uint32_t a, uint32_t b): p[0] = a, p[1] = b by one STRD */
    .global strd_pair
    .type strd_pair, %function
    .thumb_func
strd_pair:
    strd r1, r2, [r0]
    bx lr
    .size strd_pair, . - strd_pair

/* uint32_t ldm3_sum(const uint32_t *p): p[0] + p[1] + p[2] by one 32-bit LDM */
    .global ldm3_sum
    .type ldm3_sum, %function
    .thumb_func
ldm3_sum:
    ldm.w r0, {r1, r2, r3}
    adds r0, r1, r2
    adds r0, r0, r3
    bx lr
    .size ldm3_sum, . - ldm3_sum

/* uint32_t *stm2(uint32_t *p, a, b): p[0] = a, p[1] = b by a 16-bit STMIA p!; returns p + 2 */
    .global stm2
    .type stm2, %function
    .thumb_func
stm2:
    stmia r0!, {r1, r2}
    bx lr
    .size stm2, . - stm2

/* uint32_t *push_like(uint32_t *p, a, b): STMDB p!, {a, b} (PUSH on p): p[-2] = a,
 * p[-1] = b; returns p - 2 */
    .global push_like
    .type push_like, %function
    .thumb_func
push_like:
    stmdb r0!, {r1, r2}
    bx lr
    .size push_like, . - push_like

/* uint32_t pop_like(const uint32_t *p): LDMIA.W p!, {r1, r2} (POP from p): p[0] - p[1] */
    .global pop_like
    .type pop_like, %function
    .thumb_func
pop_like:
    ldmia.w r0!, {r1, r2}
    subs r0, r1, r2
    bx lr
    .size pop_like, . - pop_like

/* uint32_t ldrex_word(const uint32_t *p): p[0] by LDREX */
    .global ldrex_word
    .type ldrex_word, %function
    .thumb_func
ldrex_word:
    ldrex r0, [r0]
    clrex
    bx lr
    .size ldrex_word, . - ldrex_word

/* uint32_t vldr_word(const uint32_t *p): p[0] through s0 (VLDR) */
    .global vldr_word
    .type vldr_word, %function
    .thumb_func
vldr_word:
    vldr s0, [r0]
    vmov r0, s0
    bx lr
    .size vldr_word, . - vldr_word

/* uint32_t it_ldrd(const uint32_t *p, int c): c ? p[0] + p[1] : 7, the LDRD in an IT
 * block (it runs only when c != 0) */
    .global it_ldrd
    .type it_ldrd, %function
    .thumb_func
it_ldrd:
    movs r2, #7
    movs r3, #0
    cmp r1, #0
    it ne
    ldrdne r2, r3, [r0]
    adds r0, r2, r3
    bx lr
    .size it_ldrd, . - it_ldrd

/* uint32_t ldr_word(const uint32_t *p): p[0] by LDR (unaligned allowed) */
    .global ldr_word
    .type ldr_word, %function
    .thumb_func
ldr_word:
    ldr r0, [r0]
    bx lr
    .size ldr_word, . - ldr_word

/* uint32_t ldrh_half(const uint16_t *p): p[0] by LDRH (unaligned allowed) */
    .global ldrh_half
    .type ldrh_half, %function
    .thumb_func
ldrh_half:
    ldrh r0, [r0]
    bx lr
    .size ldrh_half, . - ldrh_half

/* void str_word(uint32_t *p, uint32_t v): p[0] = v by STR (unaligned allowed) */
    .global str_word
    .type str_word, %function
    .thumb_func
str_word:
    str r1, [r0]
    bx lr
    .size str_word, . - str_word

/* Frames made by 32-bit SP writes (stack sites of mcusim.align; tests/test_alignment.py).
 * uint32_t frame_4k(uint32_t v): SUB.W SP, #4096, v stored at the new SP: uses exactly
 * 4096 bytes of stack; returns v */
    .global frame_4k
    .type frame_4k, %function
    .thumb_func
frame_4k:
    sub.w sp, sp, #4096
    str r0, [sp]
    add.w sp, sp, #4096
    bx lr
    .size frame_4k, . - frame_4k

/* void frame_subw(uint32_t v): SUBW SP, #4092 (exactly 4092 bytes of stack) */
    .global frame_subw
    .type frame_subw, %function
    .thumb_func
frame_subw:
    subw sp, sp, #4092
    str r0, [sp]
    addw sp, sp, #4092
    bx lr
    .size frame_subw, . - frame_subw

/* void vla(uint32_t n, uint32_t v): SUB.W SP, SP, n, LSL #2 (an alloca of n words), v
 * stored at the new SP: exactly 4n bytes of stack */
    .global vla
    .type vla, %function
    .thumb_func
vla:
    sub.w sp, sp, r0, lsl #2
    str r1, [sp]
    add.w sp, sp, r0, lsl #2
    bx lr
    .size vla, . - vla
