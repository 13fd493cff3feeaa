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

/* A float's bits (a union: on the M0+ gcc made __builtin_memcpy a call). */
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

/* The integer update (fqt.h, "Weight update").  bitlen(v): the bits v needs (0 for 0). */
static inline int32_t bitlen(uint32_t v)
{
    return v ? 32 - __builtin_clz(v) : 0;
}

/* The bits of a positive float: *mant the 24-bit significand, return the unbiased exponent
 * (a = mant * 2^(e - 23)); -200 for zero / subnormal, 200 for inf, 300 for NaN or a <= 0. */
static int32_t float_parts(float a, uint32_t *mant)
{
    const uint32_t b = (uint32_t)float_bits(a);
    const int32_t ef = (int32_t)((b >> 23) & 0xFFu);
    *mant = (b & 0x7FFFFFu) | 0x800000u;
    if ((b >> 31) || (ef == 0xFF && (b & 0x7FFFFFu))) {
        return 300;
    }
    if (ef == 0xFF) {
        return 200;
    }
    return ef == 0 ? -200 : ef - 127;
}

/* Structure j's statistics from its gradient row g (S entries, not all zero): mean and
 * sd as fqt.h defines them (exact integer sums of g and of h = g >> k, |h| <= 2^b); *k_out
 * the shift k. */
static void int_stats(const int32_t *g, int32_t S, uint32_t any, float *mean_out,
                      float *sd_out, int32_t *k_out)
{
    int32_t b = 32 - bitlen((uint32_t)S);
    b = b < 15 ? b : 15;
    int32_t k = bitlen(any) - b;
    k = k > 0 ? k : 0;
    int64_t g1 = 0, a1 = 0;
    uint64_t a2 = 0;
    for (int32_t i = 0; i < S; i++) {
        const int32_t v = g[i];
        const int32_t h = v >> k;
        g1 += v;
        a1 += h;
        a2 += (uint32_t)(h * h); /* h^2 <= 2^30 */
    }
    const uint64_t aa = (uint64_t)(a1 < 0 ? -a1 : a1);
    const uint64_t d = (uint64_t)S * a2 - aa * aa; /* S^2 var(h) >= 0, < 2^64 */
    const float fs = (float)S;
    *mean_out = (float)g1 / fs;
    float var = (float)d / fs;
    var = var / fs;
    *sd_out = fqt_sqrtf(var) * (float)(1u << k);
    *k_out = k;
}

/* The per-weight constants of a structure with step != 0: V = 256 w + c0 - ((g >> k) * A
 * >> e) (fqt.h). */
typedef struct {
    int32_t k, a, e, c0;
} upd_consts_t;

static void upd_consts(upd_consts_t *c, float step, float mu, float s_old, int32_t z_old,
                       int32_t k)
{
    float cs = step / s_old;
    cs = cs * 256.0f;
    const float a = cs * (float)(1u << k);
    const float bb = mu * cs;
    uint32_t mant;
    const int32_t ex = float_parts(a < 0.0f ? -a : a, &mant);
    int32_t A, e;
    if (ex > 14 && ex < 300) { /* a >= 2^15 (or inf): the largest step */
        A = 0x7FFF;
        e = 0;
    } else if (ex < -48) { /* a < 2^-48 (or zero): no step */
        A = 0;
        e = 0;
    } else if (ex == 300) { /* NaN */
        A = 0;
        e = 0;
    } else {
        A = (int32_t)(mant >> 9); /* [2^14, 2^15): a ~ A 2^(ex - 14) */
        e = 14 - ex;
    }
    if (a < 0.0f) {
        A = -A;
    }
    c->k = k;
    c->a = A;
    c->e = e < 31 ? e : 31; /* |g >> k| A < 2^30: x >> e == x >> 31 for e >= 31 */
    int32_t B;
    if (!(bb == bb)) {
        B = 0;
    } else if (!(bb > -536870912.0f)) {
        B = -536870912; /* -2^29 */
    } else if (!(bb < 536870912.0f)) {
        B = 536870912;
    } else {
        B = (int32_t)bb; /* toward zero */
    }
    c->c0 = B - 256 * z_old;
}

static inline __attribute__((always_inline)) int32_t upd_v(uint8_t w, int32_t g,
                                                           const upd_consts_t *c)
{
    return ((int32_t)w << 8) + c->c0 - (((g >> c->k) * c->a) >> c->e);
}

/* Requantization of V to the new range: w = clamp(((V M + U) >> f) + z_new, 0, 255). */
typedef struct {
    int32_t m, f, z, rounding, zero_all;
    int64_t half; /* nearest: 2^(f-1) (0 when f = 0); floor, stochastic: 0 */
    uint32_t seed;
} upd_rq_t;

static void upd_rq_init(upd_rq_t *r, float ratio, int32_t z_new, int32_t rounding,
                        uint32_t seed)
{
    uint32_t mant;
    const int32_t ex = float_parts(ratio, &mant);
    r->zero_all = ex == 300; /* NaN or not positive: every weight 0 */
    if (ex == 200 || (ex > 23 && ex < 300)) {
        r->m = 0xFFFF;
        r->f = 0;
    } else if (ex < -39 || ex == 300) {
        r->m = 0;
        r->f = 0;
    } else {
        r->m = (int32_t)(mant >> 8); /* [2^15, 2^16): ratio / 256 ~ m 2^-f */
        r->f = 23 - ex;
    }
    r->z = z_new;
    r->rounding = rounding;
    r->seed = seed;
    r->half = rounding == FQT_ROUND_NEAREST && r->f > 0 ? (int64_t)1 << (r->f - 1) : 0;
}

/* V * m exactly (0 <= m < 2^16): on ARMv6-M from 16-bit halves (no __aeabi_lmul). */
static inline __attribute__((always_inline)) int64_t mul_vm(int32_t v, int32_t m)
{
#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
    const int32_t vh = v >> 16;
    const uint32_t vl = (uint32_t)v & 0xFFFFu;
    return (int64_t)(vh * m) * 65536 + (int64_t)(vl * (uint32_t)m);
#else
    return (int64_t)v * m;
#endif
}

static inline __attribute__((always_inline)) uint8_t upd_q(const upd_rq_t *r, int32_t v,
                                                           int32_t index)
{
    if (r->zero_all) {
        return 0;
    }
    int64_t p = mul_vm(v, r->m) + r->half;
    if (r->rounding == FQT_ROUND_STOCHASTIC) {
        const uint32_t u = fqt_noise(r->seed, index) >> 8; /* 24 bits: u 2^-24 */
        p += r->f >= 24 ? (int64_t)u << (r->f - 24) : (int64_t)(u >> (24 - r->f));
    }
    const int64_t t = (p >> r->f) + r->z;
    return (uint8_t)(t < 0 ? 0 : (t > 255 ? 255 : t));
}

FQT_API void fqt_update(fqt_update_t *u)
{
    const int32_t N = u->n_struct, S = u->struct_size;
    const float s_old = u->wr->scale;
    const int32_t z_old = u->wr->zero;
    const uint8_t *touched = u->touched;
    int32_t still = 0; /* structures without a step */
    int32_t vmin = INT32_MAX, vmax = INT32_MIN;
    uint32_t bmin = 255, bmax = 0;
    /* per structure: its statistics and step, then (step != 0) its updated weights V in
       units of s_old / 256 and their range; with accumulators V goes into the
       accumulator's slot for the requantization below (which clears it) */
    for (int32_t j = 0; j < N; j++) {
        u->step[j] = 0.0f;
        const int32_t *g = 0;
        int32_t k = 0;
        if (!touched || touched[j]) {
            g = grad_row(u, j);
            uint32_t any = 0;
            for (int32_t i = 0; i < S; i++) {
                const int32_t v = g[i];
                any |= (uint32_t)(v < 0 ? -(uint32_t)v : (uint32_t)v);
            }
            if (any) {
                float mean, sd;
                int_stats(g, S, any, &mean, &sd, &k);
                u->step[j] = ema_step(&u->mu[j], &u->sigma[j], mean, sd, u->alpha_norm,
                                      u->lr);
            }
        }
        if (u->step[j] == 0.0f) {
            still++;
            byte_range(u->w + j * S, S, &bmin, &bmax);
            continue;
        }
        upd_consts_t c;
        upd_consts(&c, u->step[j], u->mu[j], s_old, z_old, k);
        const uint8_t *w = u->w + j * S;
        int32_t *keep = u->pairs ? 0 : u->gw + j * S;
        int32_t mn = vmin, mx = vmax;
        for (int32_t i = 0; i < S; i++) {
            const int32_t v = upd_v(w[i], g[i], &c);
            mn = v < mn ? v : mn;
            mx = v > mx ? v : mx;
            if (keep) {
                keep[i] = v;
            }
        }
        vmin = mn;
        vmax = mx;
    }
    if (still && S > 0) {
        const int32_t lo = 256 * ((int32_t)bmin - z_old), hi = 256 * ((int32_t)bmax - z_old);
        vmin = lo < vmin ? lo : vmin;
        vmax = hi > vmax ? hi : vmax;
    }
    float lo = 0.0f, hi = 0.0f;
    if (N > 0 && S > 0) {
        float t = (float)vmin;
        t = t * s_old;
        t = t * 0.00390625f; /* 2^-8: exact */
        lo = t < 0.0f ? t : 0.0f;
        t = (float)vmax;
        t = t * s_old;
        t = t * 0.00390625f;
        hi = t > 0.0f ? t : 0.0f;
    }
    u->wr->real_min = lo;
    u->wr->real_max = hi;
    fqt_range_commit(u->wr);
    const float inv_s_new = 1.0f / u->wr->scale;
    upd_rq_t rq;
    upd_rq_init(&rq, s_old * inv_s_new, u->wr->zero, u->rounding, u->seed);
    const int32_t stoch = u->rounding == FQT_ROUND_STOCHASTIC;
    /* the table of the still structures' new bytes (not with stochastic rounding) */
    uint8_t *lut = u->lut && !stoch && still * S > 256 ? (uint8_t *)u->lut : 0;
    if (lut) {
        for (int32_t b = 0; b < 256; b++) {
            lut[b] = upd_q(&rq, 256 * (b - z_old), 0);
        }
    }
    /* the requantization with the new scale and zero point */
    for (int32_t j = 0; j < N; j++) {
        uint8_t *w = u->w;
        int32_t *gw = u->pairs ? 0 : u->gw;
        if (u->step[j] != 0.0f && gw) { /* V from above, read and cleared in one pass */
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                w[i] = upd_q(&rq, gw[i], i);
                gw[i] = 0;
            }
            continue;
        }
        if (u->step[j] != 0.0f) { /* pairs: the row formed again, V computed again */
            const int32_t *g = grad_row(u, j);
            uint32_t any = 0;
            for (int32_t i = 0; i < S; i++) {
                any |= (uint32_t)(g[i] < 0 ? -(uint32_t)g[i] : (uint32_t)g[i]);
            }
            int32_t b = 32 - bitlen((uint32_t)S);
            b = b < 15 ? b : 15;
            int32_t k = bitlen(any) - b;
            upd_consts_t c;
            upd_consts(&c, u->step[j], u->mu[j], s_old, z_old, k > 0 ? k : 0);
            for (int32_t i = 0; i < S; i++) {
                w[j * S + i] = upd_q(&rq, upd_v(w[j * S + i], g[i], &c), j * S + i);
            }
            continue;
        }
        if (gw && (!touched || touched[j])) {
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                gw[i] = 0;
            }
        }
        if (lut) {
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                w[i] = lut[w[i]];
            }
        } else {
            for (int32_t i = j * S; i < (j + 1) * S; i++) {
                w[i] = upd_q(&rq, 256 * ((int32_t)w[i] - z_old), i);
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
