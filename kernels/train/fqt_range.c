/* Range tracking (EMA), derived scales, Q31 multipliers and the per-layer refresh (fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_range_params(fqt_range_t *r)
{
    float lo = r->fmin < 0.0f ? r->fmin : 0.0f;
    float hi = r->fmax > 0.0f ? r->fmax : 0.0f;
    float width = hi - lo;
    if (!(width > 9.53674316e-07f)) { /* 2^-20 */
        hi = lo + 9.53674316e-07f;
        width = hi - lo;
    }
    float s = width / 255.0f;
    float t = 0.0f - lo;
    t = t / s;
    t = t + 0.5f;
    /* clamped in float first: a range that overflowed to infinity (a diverged training
       run) gives t = NaN or inf, and converting those to int32_t is undefined in C */
    int32_t z = t >= 255.0f ? 255 : t > 0.0f ? (int32_t)t : 0;
    r->scale = s;
    r->zero = z;
}

FQT_API void fqt_range_observe(fqt_range_t *r)
{
    float lo, hi;
    if (r->mode == FQT_RANGE_ACC) {
        lo = (float)r->acc_min;
        lo = lo * r->acc_scale;
        hi = (float)r->acc_max;
        hi = hi * r->acc_scale;
    } else if (r->mode == FQT_RANGE_REAL) {
        lo = r->real_min;
        hi = r->real_max;
    } else {
        return;
    }
    if (r->relu) {
        lo = lo > 0.0f ? lo : 0.0f;
        hi = hi > 0.0f ? hi : 0.0f;
    }
    if (r->headroom > 0.0f) {
        lo = lo * r->headroom;
        hi = hi * r->headroom;
    }
    const float a = r->alpha;
    const float b = 1.0f - a;
    float u = b * r->fmin;
    float v = a * lo;
    r->fmin = u + v;
    u = b * r->fmax;
    v = a * hi;
    r->fmax = u + v;
}

FQT_API void fqt_range_commit(fqt_range_t *r)
{
    if (r->mode == FQT_RANGE_FIXED) {
        return;
    }
    fqt_range_observe(r);
    fqt_range_params(r);
}

FQT_API void fqt_range_derive(fqt_range_t *dst, const fqt_range_t *src)
{
    dst->scale = src->scale * dst->derive;
    dst->zero = src->zero;
}

FQT_API void fqt_multiplier(const float *m, int32_t *multiplier, int32_t *shift)
{
    uint32_t b;
    __builtin_memcpy(&b, m, 4);
    int32_t e = (int32_t)((b >> 23) & 0xffu);
    if (e == 0) { /* zero or subnormal: the smallest multiplier */
        *multiplier = 1 << 30;
        *shift = -31;
        return;
    }
    /* M = 1.f * 2^(e-127) = (mant24 << 7) * 2^(e - 127 + 1 - 31) */
    int32_t sh = e - 126;
    int32_t mant = (int32_t)(((b & 0x7fffffu) | 0x800000u) << 7);
    if (sh > 30) {
        sh = 30;
        mant = 0x7fffffff;
    } else if (sh < -31) {
        sh = -31;
        mant = 1 << 30;
    }
    *multiplier = mant;
    *shift = sh;
}

static void set_params(fqt_quant_params_t *q, int32_t x_zero, int32_t w_zero, int32_t y_zero,
                       float m, int32_t act_min)
{
    q->x_zero = x_zero;
    q->w_zero = w_zero;
    q->y_zero = y_zero;
    fqt_multiplier(&m, &q->multiplier, &q->shift);
    q->act_min = act_min;
    q->act_max = 255;
}

FQT_API void fqt_layer_refresh(fqt_layer_t *l)
{
    const float sw = l->w->scale;
    float acc_scale = sw * l->x->scale;
    l->y->acc_scale = acc_scale;
    float m = acc_scale / l->y->scale;
    set_params(l->fwd, l->x->zero, l->w->zero, l->y->zero, m, l->relu ? l->y->zero : 0);
    l->fwd->act_max = fqt_clip_act_max(l->clip_hi, l->y->scale, l->y->zero);
    if (l->bwd_err && l->e_out && l->e_in) {
        float es = sw * l->e_out->scale;
        l->e_in->acc_scale = es;
        m = es / l->e_in->scale;
        set_params(l->bwd_err, l->e_out->zero, l->w->zero, l->e_in->zero, m, 0);
    }
    if (l->bwd_w && l->e_out) {
        l->bwd_w->x_zero = l->x->zero;
        l->bwd_w->w_zero = l->e_out->zero;
    }
    if (l->bias && l->bias_q) {
        for (int32_t o = 0; o < l->n_bias; o++) {
            float t = l->bias[o] / acc_scale;
            float h = t >= 0.0f ? 0.5f : -0.5f;
            t = t + h;
            if (t >= 2147483520.0f) {
                l->bias_q[o] = 2147483647;
            } else if (t <= -2147483520.0f) {
                l->bias_q[o] = -2147483647;
            } else {
                l->bias_q[o] = (int32_t)t;
            }
        }
    }
}
