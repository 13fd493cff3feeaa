/* The backward kernels' inner loops: row accumulation (fqt.h) and the requantization of a
 * run of accumulators (fqt_internal.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_rowacc_u8(int32_t *acc, const uint8_t *row, int32_t row_zero, int32_t scale,
                           int32_t n)
{
    fqt_rowacc(acc, row, row_zero, scale, n);
}

/* clamp(v, 0, 255) (USAT where the core has it). */
static inline __attribute__((always_inline)) int32_t sat_u8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    return (int32_t)__usat(v, 8);
#else
    return fqt_clamp(v, 0, 255);
#endif
}

/* The loop of mode FQT_RQ_HI_SAT (t >= 32: R(M a) is the high word of a * multiplier +
 * offset, shifted right by t - 32; the output clamp is [0, 255]). */
#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define FQT_NO_SMULL 1
/* ARMv6-M has no 32x32 -> 64 multiply (gcc would call __aeabi_lmul for every element):
 * hi:lo = a * b exactly from 16-bit halves, a = ah 2^16 + al, b = bh 2^16 + bl (ah, bh
 * signed: arithmetic shifts; al, bl unsigned): every partial product fits 32 bits, and a
 * signed x splits exactly as (x >> 16) 2^16 + (x & 0xFFFF).  The minimum and maximum are a
 * pass of their own (fewer live registers in the multiply loop). */
static inline __attribute__((always_inline)) void
requant_loop(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n, int32_t *mm)
{
    int32_t mn = mm[0], mx = mm[1];
    for (int32_t i = 0; i < n; i++) {
        const int32_t a = acc[i];
        mn = a < mn ? a : mn;
        mx = a > mx ? a : mx;
    }
    mm[0] = mn;
    mm[1] = mx;
    const int32_t bh = r->mult >> 16, sh = r->sh, yz = r->yz;
    const uint32_t bl = (uint32_t)r->mult & 0xFFFFu;
    const uint32_t rlo = (uint32_t)r->rnd, rhi = (uint32_t)(r->rnd >> 32);
    const int32_t *end = acc + n;
    for (; acc < end; acc++, out++) {
        const int32_t a = *acc;
        const int32_t ah = a >> 16;
        const uint32_t al = (uint32_t)a & 0xFFFFu;
        const uint32_t ll = al * bl;
        const int32_t hl = ah * (int32_t)bl, lh = (int32_t)al * bh;
        const uint32_t mid = (ll >> 16) + ((uint32_t)hl & 0xFFFFu) + ((uint32_t)lh & 0xFFFFu);
        uint32_t ph = (uint32_t)(ah * bh + (hl >> 16) + (lh >> 16)) + (mid >> 16) + rhi;
        if (rlo) { /* the carry of the offset's low word (2^31: t = 32, nearest) */
            const uint32_t pl = ((mid << 16) | (ll & 0xFFFFu)) + rlo;
            ph += pl < rlo;
        }
        *out = (uint8_t)sat_u8(((int32_t)ph >> sh) + yz);
    }
}
#else
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* The high word of a * b + (c << 32) (SMMLA) and of a * b + 2^31 (SMMULR): the whole
 * product and rounding offset in one instruction (exact: the instructions form the 64-bit
 * sum and take its top half). */
static inline int32_t smmla(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

static inline int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#endif

/* One element; half: the offset is 2^31 exactly (t = 32, nearest), a constant. */
static inline __attribute__((always_inline)) int32_t
requant_one(int32_t a, int32_t mult, int32_t sh, int64_t rnd, int32_t yz, int half)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    const int32_t v = half ? smmulr(a, mult) : smmla(a, mult, (int32_t)(rnd >> 32));
#else
    (void)half;
    const int32_t v = (int32_t)(((int64_t)a * mult + rnd) >> 32);
#endif
    return sat_u8((v >> sh) + yz);
}

/* Two elements per iteration. */
static inline __attribute__((always_inline)) void
requant_loop2(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n, int32_t *mm,
              int half)
{
    int32_t mn = mm[0], mx = mm[1];
    const int32_t mult = r->mult, sh = r->sh, yz = r->yz;
    const int64_t rnd = r->rnd;
    const int32_t *end = acc + (n & ~1);
    for (; acc < end; acc += 2, out += 2) {
        const int32_t a = acc[0], b = acc[1];
        mn = a < mn ? a : mn;
        mx = a > mx ? a : mx;
        mn = b < mn ? b : mn;
        mx = b > mx ? b : mx;
        out[0] = (uint8_t)requant_one(a, mult, sh, rnd, yz, half);
        out[1] = (uint8_t)requant_one(b, mult, sh, rnd, yz, half);
    }
    if (n & 1) {
        const int32_t a = *acc;
        mn = a < mn ? a : mn;
        mx = a > mx ? a : mx;
        *out = (uint8_t)requant_one(a, mult, sh, rnd, yz, half);
    }
    mm[0] = mn;
    mm[1] = mx;
}

static inline __attribute__((always_inline)) void
requant_loop(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n, int32_t *mm)
{
    if ((uint32_t)r->rnd) {
        requant_loop2(r, acc, out, n, mm, 1);
    } else {
        requant_loop2(r, acc, out, n, mm, 0);
    }
}
#endif

void fqt_requant_u8(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n,
                    int32_t index, int32_t *mm)
{
    /* the backward error's own mode (t >= 32, clamp [0, 255], nearest or floor) has its
     * loop; the others take fqt_out_u8 per element (the same values) */
    switch (r->mode) {
    case FQT_RQ_HI_SAT:
        requant_loop(r, acc, out, n, mm);
        break;
    default: {
        int32_t mn = mm[0], mx = mm[1];
        for (int32_t i = 0; i < n; i++) {
            const int32_t a = acc[i];
            mn = a < mn ? a : mn;
            mx = a > mx ? a : mx;
            out[i] = fqt_out_u8(a, r->q, index + i);
        }
        mm[0] = mn;
        mm[1] = mx;
    }
    }
}

FQT_API void fqt_requantize_v(const int32_t *acc, uint8_t *out, int32_t n,
                              const fqt_quant_params_t *q, int32_t *stats)
{
    fqt_rq_t rq;
    fqt_rq_init(&rq, q);
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    fqt_requant_u8(&rq, acc, out, n, 0, mm);
    stats[0] = mm[0];
    stats[1] = mm[1];
}
