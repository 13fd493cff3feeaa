/*
 * Flash timing of code that consumes fetch lines faster than the accelerator fills them
 * (tests/test_timing_conformance.py): STM32F407, 5 wait states, ART 16-byte lines.
 */
    .syntax unified
    .thumb
    .text

/* flash_wide: 12 x ADD.W (32-bit, 1 cycle each) + BX LR (2), 50 bytes from a line start */
    .global flash_wide
    .type flash_wide, %function
    .thumb_func
    .balign 16
flash_wide:
    .rept 12
    add.w r0, r0, #1
    .endr
    bx lr
    .size flash_wide, . - flash_wide
