/* Conv2D forward pass via per-pixel im2col (see fqt.h). */
#include "conv/fqt_conv_common.h"

/* The kernel, per_channel a constant: fqt_out_u8_ch (per-channel M, q->ch_mult set) or
 * fqt_out_u8 (per tensor).  Two copies, one per mode: the per-tensor loop is the code it was
 * before per-channel requantization (same cycles), the NULL test is made once per call.
 * fqt_dwconv2d.c and fqt_fc_forward.c do the same. */
static inline __attribute__((always_inline)) void
conv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
               const fqt_shape_t *s, const fqt_quant_params_t *q, uint8_t *patch,
               int32_t *stats, int per_channel)
{
    const int32_t K = s->k_h * s->k_w * s->in_c;
    fqt_stats_init(stats);
    int32_t idx = 0;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            fqt_gather_patch(x, s, oh, ow, (uint8_t)q->x_zero, patch);
            for (int32_t co = 0; co < s->out_c; co++, idx++) {
                int32_t acc = fqt_dot_u8(w + co * K, q->w_zero, patch, q->x_zero, K);
                if (bias) {
                    acc += bias[co];
                }
                fqt_stats_add(stats, acc);
                if (per_channel) {
                    y[idx] = fqt_out_u8_ch(acc, q, idx, co);
                } else {
                    y[idx] = fqt_out_u8(acc, q, idx);
                }
            }
        }
    }
}

static __attribute__((noinline)) void
conv2d_forward_pt(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                  const fqt_shape_t *s, const fqt_quant_params_t *q, uint8_t *patch,
                  int32_t *stats)
{
    conv2d_forward(x, w, bias, y, s, q, patch, stats, 0);
}

static __attribute__((noinline)) void
conv2d_forward_ch(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                  const fqt_shape_t *s, const fqt_quant_params_t *q, uint8_t *patch,
                  int32_t *stats)
{
    conv2d_forward(x, w, bias, y, s, q, patch, stats, 1);
}

FQT_API void fqt_conv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                                uint8_t *y, const fqt_shape_t *s, const fqt_quant_params_t *q,
                                uint8_t *patch, int32_t *stats)
{
    if (q->ch_mult) {
        conv2d_forward_ch(x, w, bias, y, s, q, patch, stats);
    } else {
        conv2d_forward_pt(x, w, bias, y, s, q, patch, stats);
    }
}
