/* Stack use of an exact size, for the stack checks of tests/test_machine.py.  ARMv6-M
 * code: runs on every core. */
    .syntax unified
    .thumb
    .text

/* void use_stack(uint32_t n, uint32_t v): lowers SP by n bytes (MOV SP), stores v at the
 * new SP and restores SP: its stack use is exactly n bytes (n a multiple of 8). */
    .global use_stack
    .type use_stack, %function
    .thumb_func
use_stack:
    mov r2, sp
    subs r2, r2, r0
    mov sp, r2
    str r1, [sp]
    add sp, r0
    bx lr
    .size use_stack, . - use_stack
