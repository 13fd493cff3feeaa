/* Depthwise Conv2D (depth multiplier 1): forward, error to the input, gradients (fqt.h). */
#include "common/fqt_internal.h"

/* The forward kernel, per_channel a constant: fqt_out_u8_ch (q->ch_mult set) or fqt_out_u8
 * (per tensor).  Two copies (fqt_conv2d_forward.c does the same): the per-tensor loop is the
 * code it was before per-channel requantization, the NULL test is made once per call. */
static inline __attribute__((always_inline)) void
dwconv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                 const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats,
                 int per_channel)
{
    const int32_t C = s->in_c, KK = s->k_h * s->k_w;
    fqt_stats_init(stats);
    int32_t idx = 0;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            for (int32_t c = 0; c < C; c++, idx++) {
                int32_t acc = 0;
                const uint8_t *wc = w + c * KK;
                for (int32_t kh = 0; kh < s->k_h; kh++) {
                    const int32_t ih = oh * s->stride_h - s->pad_top + kh;
                    if (ih < 0 || ih >= s->in_h) {
                        continue;
                    }
                    for (int32_t kw = 0; kw < s->k_w; kw++) {
                        const int32_t iw = ow * s->stride_w - s->pad_left + kw;
                        if (iw < 0 || iw >= s->in_w) {
                            continue;
                        }
                        acc += ((int32_t)wc[kh * s->k_w + kw] - q->w_zero) *
                               ((int32_t)x[(ih * s->in_w + iw) * C + c] - q->x_zero);
                    }
                }
                if (bias) {
                    acc += bias[c];
                }
                fqt_stats_add(stats, acc);
                if (per_channel) {
                    y[idx] = fqt_out_u8_ch(acc, q, idx, c);
                } else {
                    y[idx] = fqt_out_u8(acc, q, idx);
                }
            }
        }
    }
}

static __attribute__((noinline)) void
dwconv2d_forward_pt(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                    const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats)
{
    dwconv2d_forward(x, w, bias, y, s, q, stats, 0);
}

static __attribute__((noinline)) void
dwconv2d_forward_ch(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                    const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats)
{
    dwconv2d_forward(x, w, bias, y, s, q, stats, 1);
}

FQT_API void fqt_dwconv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                                  uint8_t *y, const fqt_shape_t *s,
                                  const fqt_quant_params_t *q, int32_t *stats)
{
    if (q->ch_mult) {
        dwconv2d_forward_ch(x, w, bias, y, s, q, stats);
    } else {
        dwconv2d_forward_pt(x, w, bias, y, s, q, stats);
    }
}

/* The visited channels: the selection's kept list (list set, n = k) or every channel (list
 * NULL, n = C).  Error: per input pixel, the
 * output rows and columns whose window covers it ([oh_lo, oh_hi], [ow_lo, ow_hi], bounds
 * that only grow); a pruned channel's accumulator is 0, so its e_in byte is
 * clamp(y_zero, act_min, act_max) (R(0) = 0 in every rounding mode): those are filled
 * first. */
static void
dwconv2d_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                        const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *mm,
                        const uint16_t *list, int32_t n)
{
    const int32_t C = s->in_c, KH = s->k_h, KW = s->k_w, KK = KH * KW;
    const int32_t sh = s->stride_h, sw = s->stride_w, OH = s->out_h, OW = s->out_w;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    const int32_t total = s->in_h * s->in_w * C;
    if (n < C && total > 0) {
        const uint8_t v0 = (uint8_t)fqt_clamp(q->y_zero, q->act_min, q->act_max);
        for (int32_t i = 0; i < total; i++) {
            e_in[i] = v0;
        }
        mm[0] = mm[0] < 0 ? mm[0] : 0;
        mm[1] = mm[1] > 0 ? mm[1] : 0;
    }
    int32_t mn = mm[0], mx = mm[1];
    int32_t oh_lo = 0, oh_hi = -1;
    uint8_t *ei = e_in;
    for (int32_t ih = 0; ih < s->in_h; ih++) {
        const int32_t a = ih + s->pad_top;
        while ((oh_hi + 1) * sh <= a && oh_hi + 1 < OH) {
            oh_hi++;
        }
        while (oh_lo * sh < a - KH + 1) {
            oh_lo++;
        }
        int32_t ow_lo = 0, ow_hi = -1;
        for (int32_t iw = 0; iw < s->in_w; iw++, ei += C) {
            const int32_t b = iw + s->pad_left;
            while ((ow_hi + 1) * sw <= b && ow_hi + 1 < OW) {
                ow_hi++;
            }
            while (ow_lo * sw < b - KW + 1) {
                ow_lo++;
            }
            const int32_t idx = (int32_t)(ei - e_in);
            for (int32_t j = 0; j < n; j++) {
                const int32_t c = list ? list[j] : j;
                const uint8_t *wc = w + c * KK;
                int32_t acc = 0;
                for (int32_t oh = oh_lo; oh <= oh_hi; oh++) {
                    const int32_t kh = a - oh * sh;
                    const uint8_t *erow = e_out + oh * OW * C + c;
                    for (int32_t ow = ow_lo; ow <= ow_hi; ow++) {
                        const int32_t e = (int32_t)erow[ow * C] - xz;
                        if (e != 0) {
                            acc += e * ((int32_t)wc[kh * KW + b - ow * sw] - wz);
                        }
                    }
                }
                mn = acc < mn ? acc : mn;
                mx = acc > mx ? acc : mx;
                ei[c] = fqt_out_u8(acc, q, idx + c);
            }
        }
    }
    mm[0] = mn;
    mm[1] = mx;
}

FQT_API void fqt_dwconv2d_backward_error(const uint8_t *w, const uint8_t *e_out,
                                         uint8_t *e_in, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, int32_t *stats,
                                         const fqt_select_t *sel)
{
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    dwconv2d_backward_error(w, e_out, e_in, s, q, mm, sel ? sel->kept : 0,
                            sel ? sel->k : s->in_c);
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

/* Gradients: per visited channel and output pixel with a non-zero error, the taps inside
 * the input (kh in [kh_lo, kh_hi), kw in [kw_lo, kw_hi); padding adds nothing). */
FQT_API void fqt_dwconv2d_backward_weights(const uint8_t *x, const uint8_t *e_out,
                                           int32_t *gw, int32_t *gb, const fqt_shape_t *s,
                                           const fqt_quant_params_t *q,
                                           const fqt_select_t *sel)
{
    const int32_t C = s->in_c, H = s->in_h, W = s->in_w, KH = s->k_h, KW = s->k_w;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    const uint16_t *list = sel ? sel->kept : 0;
    const int32_t n = sel ? sel->k : C;
    for (int32_t j = 0; j < n; j++) {
        const int32_t c = list ? list[j] : j;
        int32_t *g = gw + c * KH * KW;
        const uint8_t *eo = e_out + c;
        for (int32_t oh = 0; oh < s->out_h; oh++) {
            const int32_t ih0 = oh * s->stride_h - s->pad_top;
            const int32_t kh_lo = ih0 < 0 ? -ih0 : 0;
            const int32_t kh_hi = H - ih0 < KH ? H - ih0 : KH;
            for (int32_t ow = 0; ow < s->out_w; ow++, eo += C) {
                const int32_t e = (int32_t)*eo - wz;
                if (e == 0) {
                    continue;
                }
                if (gb) {
                    gb[c] += e;
                }
                const int32_t iw0 = ow * s->stride_w - s->pad_left;
                const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
                const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
                for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                    const uint8_t *xr = x + ((ih0 + kh) * W + iw0) * C + c;
                    for (int32_t kw = kw_lo; kw < kw_hi; kw++) {
                        g[kh * KW + kw] += e * ((int32_t)xr[kw * C] - xz);
                    }
                }
            }
        }
    }
}
