/* Conv2D forward pass via per-pixel im2col (see fqt.h). */
#include "conv/fqt_conv_common.h"

FQT_API void fqt_conv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                                uint8_t *y, const fqt_shape_t *s, const fqt_quant_params_t *q,
                                uint8_t *patch, int32_t *stats)
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
                y[idx] = fqt_out_u8(acc, q, idx);
            }
        }
    }
}
