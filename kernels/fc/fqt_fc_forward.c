/* Fully connected forward pass (see fqt.h). */
#include "common/fqt_internal.h"

/* The kernel, per_channel a constant: fqt_out_u8_ch (q->ch_mult set) or fqt_out_u8 (per
 * tensor).  Two copies (as in fqt_conv2d_forward.c): the per-tensor loop is the code it was
 * before per-channel requantization, the NULL test is made once per call. */
static inline __attribute__((always_inline)) void
fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
           int32_t in_features, int32_t out_features, const fqt_quant_params_t *q,
           int32_t *stats, int per_channel)
{
    fqt_stats_init(stats);
    for (int32_t o = 0; o < out_features; o++) {
        int32_t acc = fqt_dot_u8(w + o * in_features, q->w_zero, x, q->x_zero, in_features);
        if (bias) {
            acc += bias[o];
        }
        fqt_stats_add(stats, acc);
        if (per_channel) {
            y[o] = fqt_out_u8_ch(acc, q, o, o);
        } else {
            y[o] = fqt_out_u8(acc, q, o);
        }
    }
}

static __attribute__((noinline)) void
fc_forward_pt(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
              int32_t in_features, int32_t out_features, const fqt_quant_params_t *q,
              int32_t *stats)
{
    fc_forward(x, w, bias, y, in_features, out_features, q, stats, 0);
}

static __attribute__((noinline)) void
fc_forward_ch(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
              int32_t in_features, int32_t out_features, const fqt_quant_params_t *q,
              int32_t *stats)
{
    fc_forward(x, w, bias, y, in_features, out_features, q, stats, 1);
}

FQT_API void fqt_fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                            uint8_t *y, int32_t in_features, int32_t out_features,
                            const fqt_quant_params_t *q, int32_t *stats)
{
    if (q->ch_mult) {
        fc_forward_ch(x, w, bias, y, in_features, out_features, q, stats);
    } else {
        fc_forward_pt(x, w, bias, y, in_features, out_features, q, stats);
    }
}
