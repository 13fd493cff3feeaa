/*
 * fqt_internal.h - helpers shared by the kernels (not part of the public API).
 * Every float expression is one IEEE float32 operation per statement; the twin
 * (mcusim/fqt/twin.py) repeats them in the same order.
 */
#ifndef FQT_INTERNAL_H
#define FQT_INTERNAL_H

#include "fqt.h"

#define FQT_GOLDEN 0x9E3779B9u

static inline uint32_t fqt_noise(uint32_t seed, int32_t index)
{
    return fqt_hash32(seed + (uint32_t)index * FQT_GOLDEN);
}

static inline int32_t fqt_clamp(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* clamp(R(M acc) + y_zero, act_min, act_max), M = multiplier * 2^(shift - 31). */
static inline uint8_t fqt_out_u8_m(int32_t acc, const fqt_quant_params_t *q, int32_t index,
                                   int32_t multiplier, int32_t shift)
{
    uint32_t noise = q->rounding == FQT_ROUND_STOCHASTIC ? fqt_noise(q->seed, index) : 0u;
    int32_t v = fqt_requantize(acc, multiplier, shift, q->rounding, noise) + q->y_zero;
    return (uint8_t)fqt_clamp(v, q->act_min, q->act_max);
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

/* fqt_quantize_f (fqt.h) with float arguments. */
/* clamp(trunc(t + z + u), 0, 255) of an already scaled value t (u: the rounding offset). */
static inline int32_t fqt_quant_t(float t, int32_t z, int32_t rounding, uint32_t noise)
{
    t = t + (float)z;
    t = t + fqt_round_u(rounding, noise);
    if (!(t >= 0.0f)) {
        return 0;
    }
    if (t >= 255.0f) {
        return 255;
    }
    return (int32_t)t;
}

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
