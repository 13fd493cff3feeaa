/* Elementwise Add of two uint8 tensors (residual Add, the error sum at a fork) and the
 * refresh of its parameters (see fqt.h).
 *
 * Semantics: TFLite's reference quantized ADD, tensorflow/lite/kernels/internal/reference/
 * add.h (AddElementwise) with the parameters of tensorflow/lite/kernels/add.cc
 * (PrepareGeneralSubOp: twice_max_input_scale, left_shift 20, input multipliers
 * s_in / (2 max s), output multiplier 2 max s / (2^left_shift s_out)), adapted to uint8
 * asymmetric tensors and our R(.) (fqt_requantize) instead of gemmlowp's rounding. */
#include "common/fqt_internal.h"

FQT_API void fqt_add_u8(const uint8_t *a, const uint8_t *b, uint8_t *y, int32_t n,
                        const fqt_add_params_t *p, int32_t *stats)
{
    const int32_t za = p->a_zero, zb = p->b_zero, ls = p->left_shift;
    const int32_t lo = p->act_min, hi = p->act_max, zy = p->y_zero;
    const int32_t rounding = p->rounding;
    fqt_stats_init(stats);
    for (int32_t i = 0; i < n; i++) {
        /* (x - z) << ls through uint32: a left shift of a negative int is undefined in C */
        int32_t va = (int32_t)((uint32_t)((int32_t)a[i] - za) << ls);
        int32_t vb = (int32_t)((uint32_t)((int32_t)b[i] - zb) << ls);
        int32_t ra = fqt_requantize(va, p->a_mult, p->a_shift, FQT_ROUND_NEAREST, 0u);
        int32_t rb = fqt_requantize(vb, p->b_mult, p->b_shift, FQT_ROUND_NEAREST, 0u);
        int32_t acc = (int32_t)((uint32_t)ra + (uint32_t)rb);
        fqt_stats_add(stats, acc);
        uint32_t noise = rounding == FQT_ROUND_STOCHASTIC ? fqt_noise(p->seed, i) : 0u;
        int32_t v = fqt_requantize(acc, p->y_mult, p->y_shift, rounding, noise);
        v = (int32_t)((uint32_t)v + (uint32_t)zy);
        y[i] = (uint8_t)fqt_clamp(v, lo, hi);
    }
}

FQT_API void fqt_add_refresh(fqt_add_t *t)
{
    fqt_add_params_t *p = t->p;
    const float sa = t->a->scale, sb = t->b->scale, sy = t->y->scale;
    const float sm = sa > sb ? sa : sb;
    const float s2 = sm + sm; /* twice the larger input scale */
    float ma = sa / s2;
    float mb = sb / s2;
    float unit = s2 / (float)(1 << FQT_ADD_LEFT_SHIFT); /* exact: a power of two */
    t->y->acc_scale = unit;
    float my = unit / sy;
    p->a_zero = t->a->zero;
    p->b_zero = t->b->zero;
    p->y_zero = t->y->zero;
    fqt_multiplier(&ma, &p->a_mult, &p->a_shift);
    fqt_multiplier(&mb, &p->b_mult, &p->b_shift);
    fqt_multiplier(&my, &p->y_mult, &p->y_shift);
    p->act_min = t->relu ? t->y->zero : 0;
    p->act_max = fqt_clip_act_max(t->clip_hi, sy, t->y->zero);
    p->left_shift = FQT_ADD_LEFT_SHIFT;
}
