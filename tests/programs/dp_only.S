/* Double-precision VFP: the Cortex-M7's FPv5-D16 has it, the Cortex-M4's FPv4-SP does not.
 * double dp_add(double a, double b) with the hard-float ABI: a + b in d0. */
    .syntax unified
    .thumb
    .fpu fpv5-d16
    .text
    .global dp_add
    .type dp_add, %function
    .thumb_func
dp_add:
    vadd.f64 d0, d0, d1
    bx lr
    .size dp_add, . - dp_add
