/*
 * Divide probes for the tracer and timing tests (ARMv7-M: M4 and M7).
 */
    .syntax unified
    .thumb
    .text

/* uint32_t udiv_once(uint32_t n, uint32_t d): n / d by one UDIV */
    .global udiv_once
    .type udiv_once, %function
    .thumb_func
    .balign 4
udiv_once:
    udiv r0, r0, r1
    bx lr
    .size udiv_once, . - udiv_once

/* int32_t sdiv_once(int32_t n, int32_t d): n / d by one SDIV */
    .global sdiv_once
    .type sdiv_once, %function
    .thumb_func
    .balign 4
sdiv_once:
    sdiv r0, r0, r1
    bx lr
    .size sdiv_once, . - sdiv_once

/* uint32_t skipped_div(uint32_t n, uint32_t d): an SDIV skipped by IT when n == 0 */
    .global skipped_div
    .type skipped_div, %function
    .thumb_func
    .balign 4
skipped_div:
    cmp r0, #0
    it ne
    udivne r0, r0, r1
    bx lr
    .size skipped_div, . - skipped_div
