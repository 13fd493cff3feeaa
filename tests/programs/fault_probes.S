/*
 * Hand-written fault probes for tests/test_fault_messages.py: instructions mcusim does not
 * model (WFE, WFI, YIELD, SEV, BKPT, semihosting, SVC), a branch that clears the Thumb bit,
 * a call through a NULL (or any) function pointer, a permanently undefined instruction and
 * a word no Arm core decodes.  ARMv6-M code (runs on M0+, M4 and M7).  Each do_* probe
 * starts with a NOP so the instruction it is about sits at offset 2 of its function.
 */
    .syntax unified
    .thumb
    .text

/*
 * A Cortex-M vector table at the start of the code region, as every real image has one
 * (on the nRF52840 it sits at address 0): the initial SP and the reset vector.  Executed
 * as code it is garbage; a call through a NULL function pointer branches here.
 */
    .global vectors
    .type vectors, %object
vectors:
    .word __stack_top
    .word do_wfe            /* a Thumb function: the linker sets bit 0 */
    .size vectors, . - vectors

    .macro probe name
    .global \name
    .type \name, %function
    .thumb_func
\name:
    .endm

/* void do_wfe(void): waits for an event */
    probe do_wfe
    nop
    wfe
    bx lr
    .size do_wfe, . - do_wfe

/* void do_wfi(void): waits for an interrupt */
    probe do_wfi
    nop
    wfi
    bx lr
    .size do_wfi, . - do_wfi

/* void do_yield(void): a hint to a scheduler */
    probe do_yield
    nop
    yield
    bx lr
    .size do_yield, . - do_yield

/* void do_sev(void): signals an event */
    probe do_sev
    nop
    sev
    bx lr
    .size do_sev, . - do_sev

/* void do_bkpt(void): a breakpoint (not the semihosting 0xAB) */
    probe do_bkpt
    nop
    bkpt #0x12
    bx lr
    .size do_bkpt, . - do_bkpt

/* void do_semihost(void): a semihosting call (BKPT 0xAB) */
    probe do_semihost
    nop
    bkpt #0xab
    bx lr
    .size do_semihost, . - do_semihost

/* void do_svc(void): supervisor call #5 */
    probe do_svc
    nop
    svc #5
    bx lr
    .size do_svc, . - do_svc

/* void do_udf(void): a permanently undefined instruction (UDF #7) */
    probe do_udf
    nop
    udf #7
    bx lr
    .size do_udf, . - do_udf

/* void do_garbage(void): a word no Arm core decodes (0xffff 0xffff), as data run as code */
    probe do_garbage
    nop
    .hword 0xffff, 0xffff
    bx lr
    .size do_garbage, . - do_garbage

/* void bx_to(uint32_t addr): BX to addr as given (bit 0 not forced) */
    probe bx_to
    nop
    bx r0
    .size bx_to, . - bx_to

/* uint32_t call_ptr(uint32_t (*fp)(void)): calls fp through BLX r0 */
    probe call_ptr
    push {r4, lr}
    blx r0
    pop {r4, pc}
    .size call_ptr, . - call_ptr

/* uint32_t call_via_r3(uint32_t (*fp)(void)): moves fp to r3, then BLX r3 */
    probe call_via_r3
    push {r4, lr}
    mov r3, r0
    movs r0, #0
    blx r3
    pop {r4, pc}
    .size call_via_r3, . - call_via_r3

/* uint32_t even_target(void): returns 42; its address with bit 0 clear is an even BX */
    probe even_target
    movs r0, #42
    bx lr
    .size even_target, . - even_target

/* uint32_t even_call(void): loads even_target's address, clears the Thumb bit, BLX */
    probe even_call
    push {r4, lr}
    ldr r0, =even_target
    movs r1, #1
    bics r0, r1
    blx r0
    pop {r4, pc}
    .size even_call, . - even_call
    .ltorg
