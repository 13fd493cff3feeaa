/* Fully connected backward pass: error to the layer below and gradients (see fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_fc_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                   int32_t in_features, int32_t out_features,
                                   const fqt_quant_params_t *q, int32_t *acc, int32_t *stats,
                                   const fqt_select_t *sel)
{
    for (int32_t i = 0; i < in_features; i++) {
        acc[i] = 0;
    }
    /* e_in = W^T e_out, accumulated row by row over the visited neurons (the kept ones, or
     * all): contiguous weight reads; a row whose error is zero costs one compare. */
    const uint16_t *kept = sel ? sel->kept : 0;
    const int32_t n = sel ? sel->k : out_features;
    for (int32_t j = 0; j < n; j++) {
        const int32_t o = kept ? kept[j] : j;
        int32_t e = (int32_t)e_out[o] - q->x_zero;
        if (e != 0) {
            fqt_rowacc(acc, w + o * in_features, q->w_zero, e, in_features);
        }
    }
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    fqt_rq_t rq;
    fqt_rq_init(&rq, q);
    fqt_requant_u8(&rq, acc, e_in, in_features, 0, mm);
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

FQT_API void fqt_fc_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                     int32_t *gb, int32_t in_features, int32_t out_features,
                                     const fqt_quant_params_t *q, const fqt_select_t *sel)
{
    const uint16_t *kept = sel ? sel->kept : 0;
    const int32_t n = sel ? sel->k : out_features;
    for (int32_t j = 0; j < n; j++) {
        const int32_t o = kept ? kept[j] : j;
        int32_t e = (int32_t)e_out[o] - q->w_zero;
        if (e == 0) {
            continue; /* zero error: no gradient */
        }
        fqt_rowacc(gw + o * in_features, x, q->x_zero, e, in_features);
        if (gb) {
            gb[o] += e;
        }
    }
}
