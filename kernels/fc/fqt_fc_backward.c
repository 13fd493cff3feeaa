/* Fully connected backward pass: error to the layer below and gradients (see fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_fc_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                   int32_t in_features, int32_t out_features,
                                   const fqt_quant_params_t *q, int32_t *acc, int32_t *stats)
{
    for (int32_t i = 0; i < in_features; i++) {
        acc[i] = 0;
    }
    /* e_in = W^T e_out, accumulated row by row: contiguous weight reads, and rows whose
     * error is zero (pruned by partial updates or masked by ReLU) cost one compare. */
    for (int32_t o = 0; o < out_features; o++) {
        int32_t e = (int32_t)e_out[o] - q->x_zero;
        if (e != 0) {
            fqt_rowacc_u8(acc, w + o * in_features, q->w_zero, e, in_features);
        }
    }
    fqt_stats_init(stats);
    for (int32_t i = 0; i < in_features; i++) {
        fqt_stats_add(stats, acc[i]);
        e_in[i] = fqt_out_u8(acc[i], q, i);
    }
}

FQT_API void fqt_fc_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                     int32_t *gb, int32_t in_features, int32_t out_features,
                                     const fqt_quant_params_t *q)
{
    for (int32_t o = 0; o < out_features; o++) {
        int32_t e = (int32_t)e_out[o] - q->w_zero;
        if (e == 0) {
            continue; /* pruned or zero error: no gradient */
        }
        fqt_rowacc_u8(gw + o * in_features, x, q->x_zero, e, in_features);
        if (gb) {
            gb[o] += e;
        }
    }
}
