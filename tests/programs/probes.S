/*
 * Hand-written probes for the machine tests.  ARMv6-M code (runs on M0+, M4 and M7).
 * Stack frames are stated next to each function so tests can compare them with the
 * stack painting result by hand.
 */
    .syntax unified
    .thumb
    .text

/* uint32_t read_word(const uint32_t *p): one load from p */
    .global read_word
    .type read_word, %function
    .thumb_func
read_word:
    ldr r0, [r0]
    bx lr
    .size read_word, . - read_word

/* void write_word(uint32_t *p, uint32_t v): one store to p */
    .global write_word
    .type write_word, %function
    .thumb_func
write_word:
    str r1, [r0]
    bx lr
    .size write_word, . - write_word

/* void spin(void): never returns */
    .global spin
    .type spin, %function
    .thumb_func
spin:
    b spin
    .size spin, . - spin

/* uint32_t jump_to(uint32_t addr): branches to addr (bit 0 forced to Thumb) */
    .global jump_to
    .type jump_to, %function
    .thumb_func
jump_to:
    movs r1, #1
    orrs r0, r1
    bx r0
    .size jump_to, . - jump_to

/*
 * uint32_t frame_probe(void)
 * Frame by hand: PUSH {r4-r7, lr} = 5 words = 20 bytes; SUB SP, #64 = 64 bytes;
 * the STR at [sp] touches the lowest word.  Stack high-water mark: 84 bytes.
 */
    .global frame_probe
    .type frame_probe, %function
    .thumb_func
frame_probe:
    push {r4-r7, lr}
    sub sp, #64
    movs r4, #1
    str r4, [sp]
    movs r0, #84
    add sp, #64
    pop {r4-r7, pc}
    .size frame_probe, . - frame_probe

/*
 * uint32_t sum6(a, b, c, d, e, f): a + b + c + d + e + f; e and f come on the stack (AAPCS)
 */
    .global sum6
    .type sum6, %function
    .thumb_func
sum6:
    adds r0, r0, r1
    adds r0, r0, r2
    adds r0, r0, r3
    ldr r1, [sp]
    adds r0, r0, r1
    ldr r1, [sp, #4]
    adds r0, r0, r1
    bx lr
    .size sum6, . - sum6

/*
 * uint32_t recurse(uint32_t n): n nested frames of 8 + 256 = 264 bytes each
 * (PUSH {r4, lr}; SUB SP, #256; STR at [sp]); returns 0.  Depth n uses 264*n bytes.
 */
    .global recurse
    .type recurse, %function
    .thumb_func
recurse:
    push {r4, lr}
    sub sp, #256
    str r0, [sp]
    cmp r0, #0
    beq 1f
    subs r0, r0, #1
    bl recurse
1:  movs r0, #0
    add sp, #256
    pop {r4, pc}
    .size recurse, . - recurse
