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

FQT_API void fqt_dwconv2d_backward_error(const uint8_t *w, const uint8_t *e_out,
                                         uint8_t *e_in, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, int32_t *stats)
{
    const int32_t C = s->in_c, KK = s->k_h * s->k_w;
    fqt_stats_init(stats);
    int32_t idx = 0;
    for (int32_t ih = 0; ih < s->in_h; ih++) {
        for (int32_t iw = 0; iw < s->in_w; iw++) {
            for (int32_t c = 0; c < C; c++, idx++) {
                int32_t acc = 0;
                for (int32_t kh = 0; kh < s->k_h; kh++) {
                    const int32_t th = ih + s->pad_top - kh;
                    if (th < 0 || th % s->stride_h || th / s->stride_h >= s->out_h) {
                        continue;
                    }
                    const int32_t oh = th / s->stride_h;
                    for (int32_t kw = 0; kw < s->k_w; kw++) {
                        const int32_t tw = iw + s->pad_left - kw;
                        if (tw < 0 || tw % s->stride_w || tw / s->stride_w >= s->out_w) {
                            continue;
                        }
                        const int32_t ow = tw / s->stride_w;
                        int32_t e = (int32_t)e_out[(oh * s->out_w + ow) * C + c] - q->x_zero;
                        if (e != 0) {
                            acc += e * ((int32_t)w[c * KK + kh * s->k_w + kw] - q->w_zero);
                        }
                    }
                }
                fqt_stats_add(stats, acc);
                e_in[idx] = fqt_out_u8(acc, q, idx);
            }
        }
    }
}

FQT_API void fqt_dwconv2d_backward_weights(const uint8_t *x, const uint8_t *e_out,
                                           int32_t *gw, int32_t *gb, const fqt_shape_t *s,
                                           const fqt_quant_params_t *q)
{
    const int32_t C = s->in_c, KK = s->k_h * s->k_w;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            for (int32_t c = 0; c < C; c++) {
                int32_t e = (int32_t)e_out[(oh * s->out_w + ow) * C + c] - q->w_zero;
                if (e == 0) {
                    continue;
                }
                if (gb) {
                    gb[c] += e;
                }
                int32_t *g = gw + c * KK;
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
                        g[kh * s->k_w + kw] +=
                            e * ((int32_t)x[(ih * s->in_w + iw) * C + c] - q->x_zero);
                    }
                }
            }
        }
    }
}
