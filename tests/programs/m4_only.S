/* Code for ARMv7E-M only: SDIV does not exist on the Cortex-M0+ (ARMv6-M). */
    .syntax unified
    .thumb
    .text
    .global divide
    .type divide, %function
    .thumb_func
divide:
    sdiv r0, r0, r1
    bx lr
    .size divide, . - divide
