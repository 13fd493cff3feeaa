/* Weight update: SGD with gradient standardization, requantized to the new range (fqt.h). */
#include "common/fqt_internal.h"

static void grad_stats(const int32_t *g, int32_t n, int32_t stride, float *mean_out,
                       float *sd_out)
{
    float sum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        sum = sum + (float)g[i * stride];
    }
    const float fn = (float)n;
    const float mean = sum / fn;
    float sq = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        float d = (float)g[i * stride];
        d = d - mean;
        d = d * d;
        sq = sq + d;
    }
    sq = sq / fn;
    *mean_out = mean;
    *sd_out = fqt_sqrtf(sq);
}

static float ema_step(float *mu, float *sigma, float mean, float sd, float a, float lr)
{
    if (*sigma == 0.0f) {
        *mu = mean;
        *sigma = sd;
    } else {
        const float b = 1.0f - a;
        float u = a * *mu;
        float v = b * mean;
        *mu = u + v;
        u = a * *sigma;
        v = b * sd;
        *sigma = u + v;
    }
    return *sigma > 0.0f ? lr / *sigma : 0.0f;
}

static inline float updated(uint8_t w, int32_t z_old, float s_old, int32_t g, float mu,
                            float step)
{
    float r = (float)((int32_t)w - z_old);
    r = r * s_old;
    float d = (float)g;
    d = d - mu;
    d = d * step;
    return r - d;
}

FQT_API void fqt_update(fqt_update_t *u)
{
    const int32_t N = u->n_struct, S = u->struct_size;
    const float s_old = u->wr->scale;
    const int32_t z_old = u->wr->zero;
    for (int32_t j = 0; j < N; j++) {
        const int32_t *g = u->gw + j * S;
        int32_t any = 0;
        for (int32_t i = 0; i < S; i++) {
            any |= g[i];
        }
        u->step[j] = 0.0f;
        if (any) {
            float mean, sd;
            grad_stats(g, S, 1, &mean, &sd);
            u->step[j] = ema_step(&u->mu[j], &u->sigma[j], mean, sd, u->alpha_norm, u->lr);
        }
    }
    /* pass 1: the updated real weights' range */
    float lo = 0.0f, hi = 0.0f;
    for (int32_t j = 0; j < N; j++) {
        const float mu = u->mu[j], step = u->step[j];
        for (int32_t i = j * S; i < (j + 1) * S; i++) {
            float r = updated(u->w[i], z_old, s_old, u->gw[i], mu, step);
            if (r < lo) {
                lo = r;
            }
            if (r > hi) {
                hi = r;
            }
        }
    }
    u->wr->real_min = lo;
    u->wr->real_max = hi;
    fqt_range_commit(u->wr);
    const float inv_s_new = 1.0f / u->wr->scale;
    const int32_t z_new = u->wr->zero;
    /* pass 2: requantize with the new scale and zero point */
    for (int32_t j = 0; j < N; j++) {
        const float mu = u->mu[j], step = u->step[j];
        for (int32_t i = j * S; i < (j + 1) * S; i++) {
            float r = updated(u->w[i], z_old, s_old, u->gw[i], mu, step);
            uint32_t noise = u->rounding == FQT_ROUND_STOCHASTIC ? fqt_noise(u->seed, i) : 0u;
            u->w[i] = (uint8_t)fqt_quant_inv(r, inv_s_new, z_new, u->rounding, noise);
            u->gw[i] = 0;
        }
    }
    if (u->gb && u->bias) {
        int32_t any = 0;
        for (int32_t j = 0; j < N; j++) {
            any |= u->gb[j];
        }
        if (any) {
            float mean, sd;
            grad_stats(u->gb, N, 1, &mean, &sd);
            float step = ema_step(&u->bias_stats[0], &u->bias_stats[1], mean, sd,
                                  u->alpha_norm, u->lr);
            for (int32_t j = 0; j < N; j++) {
                if (u->step[j] != 0.0f || u->gb[j] != 0) {
                    float d = (float)u->gb[j];
                    d = d - u->bias_stats[0];
                    d = d * step;
                    u->bias[j] = u->bias[j] - d;
                }
                u->gb[j] = 0;
            }
        }
    }
}
