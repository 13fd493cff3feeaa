/*
 * fqt_internal.h - helpers shared by the kernels (not part of the public API).
 * Every float expression is one IEEE float32 operation per statement; the twin
 * (mcusim/fqt/twin.py) repeats them in the same order.
 */
#ifndef FQT_INTERNAL_H
#define FQT_INTERNAL_H

#include "fqt.h"

#if (defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP) || \
    (defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT)
#include <arm_acle.h>
#endif

#define FQT_GOLDEN 0x9E3779B9u

/* fqt_hash32 (fqt.h; kernels/common/fqt_requantize.c calls this), for the loops that want
 * it inlined (conv2d forward's stochastic rounding; fqt_noise keeps the call: inlined there
 * it made the M0+ update slower). */
static inline __attribute__((always_inline)) uint32_t fqt_hash32_inl(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static inline uint32_t fqt_noise(uint32_t seed, int32_t index)
{
    return fqt_hash32(seed + (uint32_t)index * FQT_GOLDEN);
}

static inline int32_t fqt_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* fqt_requantize (fqt.h; kernels/common/fqt_requantize.c calls this), inlined into the
 * kernels' output loops: as a call it cost the forward kernels about 30 cycles per output
 * value on the M4 (the call, and the rounding mode tested per element). */
static inline __attribute__((always_inline)) int32_t
fqt_requantize_inl(int32_t acc, int32_t multiplier, int32_t shift, int32_t rounding,
                   uint32_t noise)
{
    int64_t prod = (int64_t)acc * (int64_t)multiplier;
    const int32_t total = 31 - shift; /* 1 .. 62 */
    if (rounding == FQT_ROUND_NEAREST) {
        prod += (int64_t)1 << (total - 1);
    } else if (rounding == FQT_ROUND_STOCHASTIC) {
        prod += total <= 32 ? (int64_t)(noise >> (32 - total)) : (int64_t)noise << (total - 32);
    }
    return (int32_t)(prod >> total); /* arithmetic shift: floor */
}

/* clamp(R(M acc) + y_zero, act_min, act_max), M = multiplier * 2^(shift - 31). */
static inline uint8_t fqt_out_u8_m(int32_t acc, const fqt_quant_params_t *q, int32_t index,
                                   int32_t multiplier, int32_t shift)
{
    uint32_t noise = q->rounding == FQT_ROUND_STOCHASTIC ? fqt_noise(q->seed, index) : 0u;
    /* the sum in 64 bits: R(M acc) can lie within y_zero of INT32_MAX (large M), and a
       wrapped int32 sum would turn a saturated output into a small one */
    int64_t v = (int64_t)fqt_requantize_inl(acc, multiplier, shift, q->rounding, noise) +
                q->y_zero;
    return (uint8_t)(v < q->act_min ? q->act_min : (v > q->act_max ? q->act_max : v));
}

/* y = clamp(R(M acc) + y_zero, act_min, act_max) for output element `index`. */
static inline uint8_t fqt_out_u8(int32_t acc, const fqt_quant_params_t *q, int32_t index)
{
    return fqt_out_u8_m(acc, q, index, q->multiplier, q->shift);
}

/* fqt_out_u8 of output channel `channel`: with M_c = ch_mult[channel] * 2^(ch_shift[channel]
 * - 31) when q->ch_mult is set (per-channel requantization, fqt.h), else the tensor's M.
 * Only the forward kernels (conv2d, dwconv2d, fc) call it. */
static inline uint8_t fqt_out_u8_ch(int32_t acc, const fqt_quant_params_t *q, int32_t index,
                                    int32_t channel)
{
    if (q->ch_mult) {
        return fqt_out_u8_m(acc, q, index, q->ch_mult[channel], q->ch_shift[channel]);
    }
    return fqt_out_u8_m(acc, q, index, q->multiplier, q->shift);
}

/* acc[i] += scale * (row[i] - row_zero), i < n, |scale| <= 255 (fqt_rowacc_u8, fqt.h),
 * inlined into the backward kernels' loops: their rows are short (conv: in_c bytes per
 * tap), so the call overhead mattered.  DSP path: 4 bytes per load, widened with UXTB16
 * (bytes 0, 2 and, rotated, 1, 3), the zero point subtracted lane-wise with SSUB16, and
 * each signed 16-bit lane times scale added by SMLABB / SMLATB (scale fits 16 bits; the
 * 32-bit additions wrap as the generic path's). */
static inline __attribute__((always_inline)) void
fqt_rowacc(int32_t *acc, const uint8_t *row, int32_t row_zero, int32_t scale, int32_t n)
{
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    const uint32_t z2 = ((uint32_t)row_zero & 0xFFFFu) * 0x00010001u;
    for (; i + 4 <= n; i += 4) {
        uint32_t r4;
        __builtin_memcpy(&r4, row + i, 4);
        const int32_t r02 = (int32_t)__ssub16(__uxtb16(r4), z2);
        const int32_t r13 = (int32_t)__ssub16(__uxtb16((r4 >> 8) | (r4 << 24)), z2);
        int32_t *a = acc + i;
        const int32_t a0 = __smlabb(r02, scale, a[0]);
        const int32_t a1 = __smlabb(r13, scale, a[1]);
        const int32_t a2 = __smlatb(r02, scale, a[2]);
        const int32_t a3 = __smlatb(r13, scale, a[3]);
        a[0] = a0;
        a[1] = a1;
        a[2] = a2;
        a[3] = a3;
    }
#endif
    for (; i < n; i++) {
        acc[i] += scale * ((int32_t)row[i] - row_zero);
    }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* __uxtb16(ror(v, 8)), bytes 1 and 3 of v as halfwords, in one instruction (UXTB16 with
 * its rotation: the compilers emit a separate ROR for the ACLE form). */
static inline __attribute__((always_inline)) uint32_t fqt_uxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}
#endif

/* The requantization of a run of accumulators, prepared once per kernel call
 * (fqt_rq_init): out[i] = clamp(R(M acc[i]) + y_zero, act_min, act_max), exactly
 * fqt_out_u8 per element (the tensor's M; q->ch_mult is not read).  R(M acc) as
 * fqt_requantize: p = acc * multiplier + offset (int64, |p| < 2^63), bits t .. t + 31 of
 * p, t = 31 - shift in [1, 62].  The backward-error case -- t >= 32 (M < 1/2), nearest or
 * floor, clamp [0, 255] -- has a loop of its own: R is the high word of p shifted right by
 * t - 32, the offset 2^(t-1) or 0 decided once here; every other case takes fqt_out_u8. */
enum {
    FQT_RQ_HI_SAT = 0, /* t >= 32, nearest or floor, act_min 0, act_max 255 */
    FQT_RQ_OTHER = 1,  /* fqt_out_u8 per element */
};
typedef struct {
    int64_t rnd;       /* nearest: 2^(t-1); floor: 0 */
    int32_t mult, sh;  /* sh = t - 32 */
    int32_t yz, mode;
    const fqt_quant_params_t *q;
} fqt_rq_t;

static inline void fqt_rq_init(fqt_rq_t *r, const fqt_quant_params_t *q)
{
    const int32_t t = 31 - q->shift;
    r->q = q;
    r->mult = q->multiplier;
    r->yz = q->y_zero;
    r->sh = t - 32;
    r->rnd = q->rounding == FQT_ROUND_NEAREST ? (int64_t)1 << (t - 1) : 0;
    r->mode = t >= 32 && q->rounding != FQT_ROUND_STOCHASTIC && q->act_min == 0 &&
                      q->act_max == 255
                  ? FQT_RQ_HI_SAT
                  : FQT_RQ_OTHER;
}

/* out[i] for i < n (noise index index + i), and the running minimum and maximum of acc
 * folded into mm[0], mm[1] (fqt_rowacc_u8.c). */
void fqt_requant_u8(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n,
                    int32_t index, int32_t *mm);

static inline void fqt_stats_init(int32_t *stats)
{
    if (stats) {
        stats[0] = INT32_MAX;
        stats[1] = INT32_MIN;
    }
}

static inline void fqt_stats_add(int32_t *stats, int32_t acc)
{
    if (stats) {
        if (acc < stats[0]) {
            stats[0] = acc;
        }
        if (acc > stats[1]) {
            stats[1] = acc;
        }
    }
}

static inline float fqt_round_u(int32_t rounding, uint32_t noise)
{
    if (rounding == FQT_ROUND_NEAREST) {
        return 0.5f;
    }
    if (rounding == FQT_ROUND_STOCHASTIC) {
        float u = (float)(int32_t)(noise >> 8); /* exact: < 2^24 */
        return u * 5.9604644775390625e-08f;      /* * 2^-24, exact */
    }
    return 0.0f;
}

/* clamp(trunc(t + u), 0, 255) of a scaled value t that already holds its zero point (u: the
 * rounding offset). */
static inline int32_t fqt_quant_tz(float t, int32_t rounding, uint32_t noise)
{
    t = t + fqt_round_u(rounding, noise);
    if (!(t >= 0.0f)) {
        return 0;
    }
    if (t >= 255.0f) {
        return 255;
    }
    return (int32_t)t;
}

/* clamp(trunc(t + z + u), 0, 255) of an already scaled value t (u: the rounding offset). */
static inline int32_t fqt_quant_t(float t, int32_t z, int32_t rounding, uint32_t noise)
{
    return fqt_quant_tz(t + (float)z, rounding, noise);
}

/* fqt_quantize_f (fqt.h) with float arguments. */
static inline int32_t fqt_quant_f(float v, float s, int32_t z, int32_t rounding, uint32_t noise)
{
    return fqt_quant_t(v / s, z, rounding, noise);
}

/* fqt_quant_f with the scale's reciprocal computed once by the caller: one multiply instead
 * of a divide per value.  On FPU-less cores libgcc's float divide was the weight update's
 * biggest cost (mcusim profile); the numpy twin does the same float32 operations. */
static inline int32_t fqt_quant_inv(float v, float inv_s, int32_t z, int32_t rounding,
                                    uint32_t noise)
{
    return fqt_quant_t(v * inv_s, z, rounding, noise);
}

float fqt_sqrtf(float x);
float fqt_expf(float x);
float fqt_logf(float x);

/* Upper clamp of a clipped activation (ReLU6: clip_hi = 6): y_zero + round-half-up(clip_hi
 * / s_y), at most 255; 255 when clip_hi <= 0 (no clip).  fqt_layer_refresh and
 * fqt_add_refresh use it (twin: mcusim.fqt.twin.clip_act_max). */
static inline int32_t fqt_clip_act_max(float clip_hi, float s_y, int32_t y_zero)
{
    if (!(clip_hi > 0.0f)) {
        return 255;
    }
    float t = clip_hi / s_y;
    t = t + 0.5f;
    if (!(t < 255.0f)) { /* also inf/NaN: converting those to int32_t is undefined */
        return 255;
    }
    int32_t v = y_zero + (t > 0.0f ? (int32_t)t : 0); /* t <= 0 only for a scale <= 0 */
    return v < 255 ? v : 255;
}

#endif /* FQT_INTERNAL_H */
