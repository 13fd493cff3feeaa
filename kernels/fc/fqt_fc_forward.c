/* Fully connected forward pass (see fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                            uint8_t *y, int32_t in_features, int32_t out_features,
                            const fqt_quant_params_t *q, int32_t *stats)
{
    fqt_stats_init(stats);
    for (int32_t o = 0; o < out_features; o++) {
        int32_t acc = fqt_dot_u8(w + o * in_features, q->w_zero, x, q->x_zero, in_features);
        if (bias) {
            acc += bias[o];
        }
        fqt_stats_add(stats, acc);
        y[o] = fqt_out_u8(acc, q, o);
    }
}
