/* Fully connected forward pass, uint8 asymmetric per-tensor quantization (see fqt.h). */
#include "fqt.h"

FQT_API void fqt_fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                            uint8_t *y, int32_t in_features, int32_t out_features,
                            const fqt_quant_params_t *q)
{
    for (int32_t o = 0; o < out_features; o++) {
        int32_t acc = fqt_dot_u8(w + o * in_features, q->w_zero, x, q->x_zero, in_features);
        if (bias) {
            acc += bias[o];
        }
        int32_t v = fqt_requantize(acc, q->multiplier, q->shift, q->rounding) + q->y_zero;
        if (v < q->act_min) {
            v = q->act_min;
        }
        if (v > q->act_max) {
            v = q->act_max;
        }
        y[o] = (uint8_t)v;
    }
}
