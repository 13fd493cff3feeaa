/*
 * Probes for the tracer and timing tests (ARMv6-M: runs on M0+, M4 and M7).
 */
    .syntax unified
    .thumb
    .text

/* uint32_t sum_bytes(const uint8_t *p, uint32_t n): sum of n bytes (n >= 1) */
    .global sum_bytes
    .type sum_bytes, %function
    .thumb_func
    .balign 4
sum_bytes:
    movs r2, #0
1:  ldrb r3, [r0]
    adds r2, r2, r3
    adds r0, r0, #1
    subs r1, r1, #1
    bne 1b
    movs r0, r2
    bx lr
    .size sum_bytes, . - sum_bytes
