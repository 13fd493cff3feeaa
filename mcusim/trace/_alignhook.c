/*
 * mcusim_align_hook (UC_HOOK_CODE, registered only on the addresses of instructions found
 * by decoding the image; mcusim.align).  No Python runs on the common path.  The hook runs
 * before the instruction executes (inside an IT block only when its condition passes) and
 * computes v = R[rn] + offset + sign * (R[rm] << shift) (a missing register counts 0):
 *  - alignment sites (the ARMv7-M loads and stores that need a word-aligned address:
 *    LDRD/STRD, LDM/STM, VLDR/VSTR/VLDM/VSTM, LDREX/STREX; Unicorn accepts them at any
 *    address, the core raises an UNALIGNED UsageFault): v is the first address accessed;
 *    when it is not a multiple of 4 the fault is recorded and the emulator stopped in
 *    front of the instruction;
 *  - stack sites (the writes of SP that can lower it by more than a 16-bit SUB SP can:
 *    MOV SP, Rm; ADD SP, Rm; SUB.W/SUBW SP, SP, #imm; SUB SP, SP, Rm): v is the new SP;
 *    the lowest one is kept (stack overflow detection, mcusim.machine).
 *
 * Compiled into the same extension module as _blockhook.c (setup.py).
 */
#include <stdint.h>
#include <stdlib.h>

#if defined(_WIN32)
#define ALIGN_EXPORT __declspec(dllexport)
#else
#define ALIGN_EXPORT __attribute__((visibility("default")))
#endif

typedef int (*align_stop_fn)(void *uc);
typedef int (*align_reg_read_fn)(void *uc, int regid, void *value);

typedef struct align_site align_site_t;

typedef struct {
    align_stop_fn emu_stop;
    align_reg_read_fn reg_read;
    int faulted;
    uint64_t pc;      /* address of the faulting instruction */
    uint64_t address; /* the unaligned address it would access */
    uint32_t min_sp;  /* lowest SP written by a stack site since the last reset */
    align_site_t **sites;
    size_t nsites, cap;
} align_state_t;

struct align_site {
    align_state_t *state;
    int rn;         /* Unicorn register id, or -1 */
    int rm;         /* Unicorn register id, or -1 */
    int sign;       /* +1 or -1: how R[rm] << shift is applied */
    int shift;
    int32_t offset;
    int stack;      /* 0: alignment site, 1: stack site */
};

ALIGN_EXPORT align_state_t *mcusim_align_new(void *emu_stop, void *reg_read)
{
    align_state_t *s = calloc(1, sizeof(align_state_t));
    if (s) {
        s->min_sp = UINT32_MAX;
        s->emu_stop = (align_stop_fn)emu_stop;
        s->reg_read = (align_reg_read_fn)reg_read;
    }
    return s;
}

ALIGN_EXPORT void mcusim_align_free(align_state_t *s)
{
    if (!s) {
        return;
    }
    for (size_t i = 0; i < s->nsites; i++) {
        free(s->sites[i]);
    }
    free(s->sites);
    free(s);
}

/* A site of its own (its address is the hook's user data: it never moves). */
ALIGN_EXPORT align_site_t *mcusim_align_add(align_state_t *s, int rn, int rm, int sign,
                                            int shift, int32_t offset, int stack)
{
    if (s->nsites == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        align_site_t **grown = realloc(s->sites, cap * sizeof(*grown));
        if (!grown) {
            return NULL;
        }
        s->sites = grown;
        s->cap = cap;
    }
    align_site_t *site = malloc(sizeof(align_site_t));
    if (!site) {
        return NULL;
    }
    site->state = s;
    site->rn = rn;
    site->rm = rm;
    site->sign = sign;
    site->shift = shift;
    site->offset = offset;
    site->stack = stack;
    s->sites[s->nsites++] = site;
    return site;
}

ALIGN_EXPORT void mcusim_align_reset(align_state_t *s)
{
    s->faulted = 0;
    s->pc = 0;
    s->address = 0;
    s->min_sp = UINT32_MAX;
}

ALIGN_EXPORT uint32_t mcusim_align_min_sp(align_state_t *s)
{
    return s->min_sp;
}

/* 1 and the instruction and address when a call faulted, else 0. */
ALIGN_EXPORT int mcusim_align_fault(align_state_t *s, uint64_t *pc, uint64_t *address)
{
    *pc = s->pc;
    *address = s->address;
    return s->faulted;
}

ALIGN_EXPORT void mcusim_align_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    (void)size;
    align_site_t *site = (align_site_t *)user_data;
    align_state_t *s = site->state;
    uint32_t a = 0, m = 0;
    if (site->rn >= 0) {
        s->reg_read(uc, site->rn, &a);
    }
    if (site->rm >= 0) {
        s->reg_read(uc, site->rm, &m);
        m <<= site->shift;
    }
    uint32_t ea = a + (uint32_t)site->offset + (site->sign < 0 ? 0u - m : m);
    if (site->stack) {
        if (ea < s->min_sp) {
            s->min_sp = ea;
        }
        return;
    }
    if ((ea & 3u) && !s->faulted) {
        s->faulted = 1;
        s->pc = address;
        s->address = ea;
        s->emu_stop(uc);
    }
}
