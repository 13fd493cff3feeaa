/* Helpers of the fully connected kernels (kernels/fc/), not part of the public API. */
#ifndef FQT_FC_COMMON_H
#define FQT_FC_COMMON_H

#include "common/fqt_internal.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define FQT_FC_DSP 1
/* A word of 4 bytes from any address (an unaligned LDR: allowed on ARMv7-M). */
static inline __attribute__((always_inline)) uint32_t fc_ld32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}

/* UXTB16 of the word rotated right by 8: bytes 1 and 3 in the two halves, in one
 * instruction (UXTB16 Rd, Rm, ROR #8; gcc 12 emits a separate ROR for
 * __uxtb16(__ror(v, 8)), which also costs a register in the 4-row loop). */
static inline __attribute__((always_inline)) uint32_t fc_uxtb16_r8(uint32_t v)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
#endif

/* fqt_requantize (kernels/common/fqt_requantize.c), inline: the same expression. */
static inline __attribute__((always_inline)) int32_t
fc_requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t rounding, uint32_t noise)
{
    int64_t prod = (int64_t)acc * (int64_t)multiplier;
    int32_t total = 31 - shift; /* 1 .. 62 */
    if (rounding == FQT_ROUND_NEAREST) {
        prod += (int64_t)1 << (total - 1);
    } else if (rounding == FQT_ROUND_STOCHASTIC) {
        prod += total <= 32 ? (int64_t)(noise >> (32 - total)) : (int64_t)noise << (total - 32);
    }
    return (int32_t)(prod >> total);
}

/* fqt_out_u8_m (fqt_internal.h) with the requantization inline: the same value. */
static inline __attribute__((always_inline)) uint8_t
fc_out_u8_m(int32_t acc, const fqt_quant_params_t *q, int32_t index, int32_t multiplier,
            int32_t shift)
{
    uint32_t noise = q->rounding == FQT_ROUND_STOCHASTIC ? fqt_noise(q->seed, index) : 0u;
    int64_t v = (int64_t)fc_requantize(acc, multiplier, shift, q->rounding, noise) + q->y_zero;
    return (uint8_t)(v < q->act_min ? q->act_min : (v > q->act_max ? q->act_max : v));
}

/* One multiplier M = mult * 2^(shift - 31), prepared for fc_rq_out.  t = 31 - shift >= 32
 * (M < 1/2, the usual case) with nearest or floor rounding: R(M acc) = (p + rnd) >> t is
 * the high word of p + rnd (one SMLAL from rnd) shifted right by t - 32 (rnd = 2^(t-1) or
 * 0), |R| < 2^30, so adding y_zero cannot wrap.  Every other case: fc_out_u8_m. */
typedef struct {
    int64_t rnd;
    int32_t mult, shift, sh, fast;
} fc_rq_t;

static inline __attribute__((always_inline)) void
fc_rq_set(fc_rq_t *r, const fqt_quant_params_t *q, int32_t mult, int32_t shift)
{
    const int32_t t = 31 - shift;
    r->mult = mult;
    r->shift = shift;
    r->sh = t - 32;
    r->fast = t >= 32 && q->rounding != FQT_ROUND_STOCHASTIC;
    r->rnd = r->fast && q->rounding == FQT_ROUND_NEAREST ? (int64_t)1 << (t - 1) : 0;
}

/* fc_out_u8_m as a function: the cases other than fc_rq_t's fast one (stochastic rounding,
 * t < 32) share one copy instead of one per output call site (flash). */
static __attribute__((noinline, unused)) uint8_t
fc_out_u8_slow(int32_t acc, const fqt_quant_params_t *q, int32_t index, int32_t multiplier,
               int32_t shift)
{
    return fc_out_u8_m(acc, q, index, multiplier, shift);
}

/* fqt_out_u8_m(acc, q, index, mult, shift): clamp(R(M acc) + y_zero, act_min, act_max). */
static inline __attribute__((always_inline)) uint8_t
fc_rq_out(const fc_rq_t *r, const fqt_quant_params_t *q, int32_t acc, int32_t index)
{
    if (r->fast) {
        const int32_t v =
            ((int32_t)(((int64_t)acc * r->mult + r->rnd) >> 32) >> r->sh) + q->y_zero;
        return (uint8_t)(v < q->act_min ? q->act_min : (v > q->act_max ? q->act_max : v));
    }
    return fc_out_u8_slow(acc, q, index, r->mult, r->shift);
}

#endif /* FQT_FC_COMMON_H */
