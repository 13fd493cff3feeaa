/* An FC layer's gradient kept as the mini-batch's (input, error) pairs (fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_fc_pairs_store(const uint8_t *x, const uint8_t *e_out, fqt_pairs_t *pr,
                                const fqt_quant_params_t *q, int32_t *gb,
                                const fqt_select_t *sel)
{
    const int32_t b = pr->count, S = pr->in_features, N = pr->out_features;
    if (b >= pr->capacity) {
        return;
    }
    const int32_t ze = q->w_zero;
    uint8_t *xs = pr->x + b * S, *es = pr->e + b * N;
    for (int32_t i = 0; i < S; i++) {
        xs[i] = x[i];
    }
    pr->zeros[2 * b] = q->x_zero;
    pr->zeros[2 * b + 1] = ze;
    if (sel) {
        for (int32_t o = 0; o < N; o++) {
            es[o] = (uint8_t)ze;
        }
    }
    const uint16_t *kept = sel ? sel->kept : 0;
    const int32_t n = sel ? sel->k : N;
    for (int32_t j = 0; j < n; j++) {
        const int32_t o = kept ? kept[j] : j;
        es[o] = e_out[o];
        if (gb) {
            gb[o] += (int32_t)e_out[o] - ze;
        }
    }
    pr->count = b + 1;
}
