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

/* The weight as it is (a structure without a step). */
static inline float unchanged(int32_t w, int32_t z_old, float s_old)
{
    float r = (float)(w - z_old);
    return r * s_old;
}

/* A float's bits in an int32 slot and back (a union: on the M0+ gcc made
 * __builtin_memcpy a call). */
typedef union {
    float f;
    int32_t i;
} fqt_fbits_t;

static inline int32_t float_bits(float f)
{
    fqt_fbits_t u;
    u.f = f;
    return u.i;
}

static inline float bits_float(int32_t i)
{
    fqt_fbits_t u;
    u.i = i;
    return u.f;
}

/* *mn = min(*mn, p[i]), *mx = max(*mx, p[i]) over i < n.  DSP: 4 bytes at a time, USUB8
 * setting GE where the new byte is >= the running one, SEL picking per lane. */
static void byte_range(const uint8_t *p, int32_t n, uint32_t *mn, uint32_t *mx)
{
    uint32_t lo = *mn, hi = *mx;
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    if (n >= 4) {
        uint32_t lo4 = lo * 0x01010101u, hi4 = hi * 0x01010101u;
        for (; i + 4 <= n; i += 4) {
            uint32_t x;
            __builtin_memcpy(&x, p + i, 4);
            (void)__usub8(x, lo4);
            lo4 = __sel(lo4, x);
            (void)__usub8(x, hi4);
            hi4 = __sel(x, hi4);
        }
        for (int32_t k = 0; k < 32; k += 8) {
            const uint32_t a = (lo4 >> k) & 0xFFu, b = (hi4 >> k) & 0xFFu;
            lo = a < lo ? a : lo;
            hi = b > hi ? b : hi;
        }
    }
#endif
    for (; i < n; i++) {
        const uint32_t x = p[i];
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    *mn = lo;
    *mx = hi;
}

/* Structure j's gradient formed from the pairs into u->row. */
static __attribute__((noinline)) const int32_t *form_row(const fqt_update_t *u, int32_t j)
{
    const int32_t S = u->struct_size;
    const fqt_pairs_t *pr = u->pairs;
    int32_t *row = u->row;
    for (int32_t i = 0; i < S; i++) {
        row[i] = 0;
    }
    const int32_t N = u->n_struct;
    for (int32_t b = 0; b < pr->count; b++) {
        const int32_t e = (int32_t)pr->e[b * N + j] - pr->zeros[2 * b + 1];
        if (e != 0) {
            fqt_rowacc_u8(row, pr->x + b * S, pr->zeros[2 * b], e, S);
        }
    }
    return row;
}

/* Structure j's gradient row: the accumulators, or formed from the pairs. */
static inline const int32_t *grad_row(const fqt_update_t *u, int32_t j)
{
    return u->pairs ? form_row(u, j) : u->gw + j * u->struct_size;
}

FQT_API void fqt_update(fqt_update_t *u)
{
    const int32_t N = u->n_struct, S = u->struct_size;
    const float s_old = u->wr->scale;
    const int32_t z_old = u->wr->zero;
    const uint8_t *touched = u->touched;
    const int32_t stoch = u->rounding == FQT_ROUND_STOCHASTIC;
    int32_t still = 0; /* structures without a step */
    for (int32_t j = 0; j < N; j++) {
        u->step[j] = 0.0f;
        if (!touched || touched[j]) {
            const int32_t *g = grad_row(u, j);
            int32_t any = 0;
            for (int32_t i = 0; i < S; i++) {
                any |= g[i];
            }
            if (any) {
                float mean, sd;
                grad_stats(g, S, 1, &mean, &sd);
                u->step[j] = ema_step(&u->mu[j], &u->sigma[j], mean, sd, u->alpha_norm,
                                      u->lr);
            }
        }
        if (u->step[j] == 0.0f) {
            still++;
        }
    }
    /* pass 1: the updated real weights' range; the still structures' from their bytes */
    float lo = 0.0f, hi = 0.0f;
    uint32_t bmin = 255, bmax = 0;
    for (int32_t j = 0; j < N; j++) {
        const float mu = u->mu[j], step = u->step[j];
        if (step == 0.0f) {
            byte_range(u->w + j * S, S, &bmin, &bmax);
            continue;
        }
        const int32_t *g = grad_row(u, j) - j * S;
        /* with accumulators, r goes back into the accumulator's slot (its bits): pass 2
           reads it instead of computing it again (gw is cleared there) */
        int32_t *keep = u->pairs ? 0 : u->gw;
        for (int32_t i = j * S; i < (j + 1) * S; i++) {
            float r = updated(u->w[i], z_old, s_old, g[i], mu, step);
            if (r < lo) {
                lo = r;
            }
            if (r > hi) {
                hi = r;
            }
            if (keep) {
                keep[i] = float_bits(r);
            }
        }
    }
    if (still && S > 0) {
        const float rmin = unchanged((int32_t)bmin, z_old, s_old);
        const float rmax = unchanged((int32_t)bmax, z_old, s_old);
        if (rmin < lo) {
            lo = rmin;
        }
        if (rmax > hi) {
            hi = rmax;
        }
    }
    u->wr->real_min = lo;
    u->wr->real_max = hi;
    fqt_range_commit(u->wr);
    const float inv_s_new = 1.0f / u->wr->scale;
    const int32_t z_new = u->wr->zero;
    /* the table of the still structures' new bytes (or, stochastic, of t = r inv + z) */
    float *lut = u->lut && still * S > 256 ? u->lut : 0;
    if (lut) {
        for (int32_t b = 0; b < 256; b++) {
            float tv = unchanged(b, z_old, s_old);
            tv = tv * inv_s_new;
            tv = tv + (float)z_new;
            if (stoch) {
                lut[b] = tv;
            } else {
                ((uint8_t *)lut)[b] = (uint8_t)fqt_quant_tz(tv, u->rounding, 0u);
            }
        }
    }
    /* pass 2: requantize with the new scale and zero point */
    for (int32_t j = 0; j < N; j++) {
        const float mu = u->mu[j], step = u->step[j];
        uint8_t *w = u->w;
        int32_t *gw = u->pairs ? 0 : u->gw;
        if (step != 0.0f && gw) { /* r from pass 1, read and cleared in one pass */
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                const float r = bits_float(gw[i]);
                uint32_t noise = stoch ? fqt_noise(u->seed, i) : 0u;
                w[i] = (uint8_t)fqt_quant_inv(r, inv_s_new, z_new, u->rounding, noise);
                gw[i] = 0;
            }
            continue;
        }
        if (step != 0.0f) { /* pairs: the row formed again */
            const int32_t *g = grad_row(u, j) - j * S;
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                float r = updated(w[i], z_old, s_old, g[i], mu, step);
                uint32_t noise = stoch ? fqt_noise(u->seed, i) : 0u;
                w[i] = (uint8_t)fqt_quant_inv(r, inv_s_new, z_new, u->rounding, noise);
            }
            continue;
        }
        if (gw && (!touched || touched[j])) {
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                gw[i] = 0;
            }
        }
        if (lut && !stoch) {
            const uint8_t *q = (const uint8_t *)lut;
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                w[i] = q[w[i]];
            }
        } else if (lut) {
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                w[i] = (uint8_t)fqt_quant_tz(lut[w[i]], u->rounding, fqt_noise(u->seed, i));
            }
        } else {
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                float r = unchanged(w[i], z_old, s_old);
                uint32_t noise = stoch ? fqt_noise(u->seed, i) : 0u;
                w[i] = (uint8_t)fqt_quant_inv(r, inv_s_new, z_new, u->rounding, noise);
            }
        }
    }
    if (touched) {
        for (int32_t j = 0; j < N; j++) {
            u->touched[j] = 0;
        }
    }
    if (u->pairs) {
        u->pairs->count = 0;
        for (int32_t i = 0; i < S; i++) {
            u->row[i] = 0;
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
