/* Dynamic partial gradient updates: keep the top-k structures by error magnitude (fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_select_topk(uint8_t *e, fqt_select_t *sel)
{
    const int32_t N = sel->n_struct, P = sel->n_pix, z = sel->er->zero;
    uint32_t *mag = sel->mag;
    uint32_t total = 0;
    for (int32_t c = 0; c < N; c++) {
        mag[c] = 0;
    }
    for (int32_t p = 0; p < P; p++) {
        const uint8_t *ep = e + p * N;
        for (int32_t c = 0; c < N; c++) {
            int32_t d = (int32_t)ep[c] - z;
            mag[c] += (uint32_t)(d < 0 ? -d : d);
        }
    }
    for (int32_t c = 0; c < N; c++) {
        total += mag[c];
    }
    float eps = sel->eps;
    if (sel->eps_mode == 0) {
        float mean = (float)(int32_t)total;
        float cnt = (float)(N * P);
        mean = mean / cnt;
        if (mean > sel->max_mean) {
            sel->max_mean = mean;
        }
        eps = sel->max_mean > 0.0f ? mean / sel->max_mean : 0.0f;
        sel->eps = eps;
    }
    if (eps < 0.0f) {
        eps = 0.0f - eps;
    }
    float t = sel->lambda_max - sel->lambda_min;
    t = eps * t;
    t = sel->lambda_min + t;
    if (!(t <= 1.0f)) { /* also NaN (a diverged loss): keep every channel */
        t = 1.0f;
    }
    t = t * (float)N;
    int32_t k = (int32_t)t;
    if (k < 1) {
        k = 1;
    }
    if (k > N) {
        k = N;
    }
    sel->k = k;
    if (k == N) {
        return;
    }
    /* rank_c = #{j : mag_j > mag_c or (mag_j == mag_c and j < c)}; keep rank_c < k */
    for (int32_t c = 0; c < N; c++) {
        int32_t rank = 0;
        const uint32_t m = mag[c];
        for (int32_t j = 0; j < N && rank < k; j++) {
            if (mag[j] > m || (mag[j] == m && j < c)) {
                rank++;
            }
        }
        if (rank >= k) {
            for (int32_t p = 0; p < P; p++) {
                e[p * N + c] = (uint8_t)z;
            }
        }
    }
}

FQT_API void fqt_loss_eps(const fqt_loss_t *loss, float *max_loss, fqt_select_t *sel)
{
    const float l = loss->loss;
    if (l > *max_loss) {
        *max_loss = l;
    }
    sel->eps = *max_loss > 0.0f ? l / *max_loss : 0.0f;
}
