/*
 * Float32 helpers: sqrt, exp, log and quantization of a real value.  Written one IEEE
 * operation per statement (built with -ffp-contract=off) so that the numpy twin repeats
 * them bit for bit.  sqrt is correctly rounded on every path (VSQRT on FPU cores, an
 * integer square root on Cortex-M0+), as is numpy's.
 */
#include "common/fqt_internal.h"

static inline uint32_t f2u(float f)
{
    uint32_t u;
    __builtin_memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    __builtin_memcpy(&f, &u, 4);
    return f;
}

float fqt_sqrtf(float x)
{
#if defined(__ARM_FP) && (__ARM_FP & 4)
    return __builtin_sqrtf(x); /* VSQRT.F32 (-fno-math-errno) */
#else
    uint32_t b = f2u(x);
    if (x <= 0.0f || (b >> 23) == 0xffu) {
        return x > 0.0f ? x : 0.0f; /* 0, negatives (never passed) and inf */
    }
    int32_t e = (int32_t)((b >> 23) & 0xffu);
    uint32_t m = b & 0x7fffffu;
    if (e == 0) { /* subnormal: normalise */
        e = 1;
        while (!(m & 0x800000u)) {
            m <<= 1;
            e--;
        }
    } else {
        m |= 0x800000u;
    }
    int32_t p = e - 127 - 23;       /* x = m * 2^p, m in [2^23, 2^24) */
    int32_t k = (p & 1) ? 23 : 24;  /* m * 2^k in [2^46, 2^48), p - k even */
    uint64_t v = (uint64_t)m << k;
    p -= k;
    uint64_t r = 0, bit = (uint64_t)1 << 46;
    uint64_t rem = v;
    while (bit > rem) {
        bit >>= 2;
    }
    while (bit) { /* digit-by-digit integer square root */
        if (rem >= r + bit) {
            rem -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    /* r = floor(sqrt(v)) in [2^23, 2^24), rem = v - r^2; round to nearest (no ties) */
    int32_t q = p / 2;
    if (rem > r) {
        r++;
        if (r == (1u << 24)) {
            r >>= 1;
            q++;
        }
    }
    return u2f((uint32_t)(150 + q) << 23 | ((uint32_t)r & 0x7fffffu));
#endif
}

/* e^x, relative error < 3e-6 (degree-5 polynomial after ln 2 range reduction): plenty
 * for softmax probabilities. */
float fqt_expf(float x)
{
    if (x < -87.0f) {
        return 0.0f;
    }
    if (x > 88.0f) {
        x = 88.0f;
    }
    float t = x * 1.44269502f;
    float h = t >= 0.0f ? 0.5f : -0.5f;
    t = t + h;
    int32_t k = (int32_t)t;
    float kf = (float)k;
    float hi = kf * 0.693145752f; /* ln 2, high part: exact products */
    float lo = kf * 1.42860677e-06f;
    float r = x - hi;
    r = r - lo;
    float p = 8.33333333e-3f;
    p = p * r;
    p = p + 4.16666667e-2f;
    p = p * r;
    p = p + 1.66666667e-1f;
    p = p * r;
    p = p + 0.5f;
    p = p * r;
    p = p + 1.0f;
    p = p * r;
    p = p + 1.0f;
    return p * u2f((uint32_t)(k + 127) << 23);
}

float fqt_logf(float x)
{
    if (!(x >= 1.17549435e-38f)) {
        x = 1.17549435e-38f; /* 2^-126: log of 0 and subnormals is clamped */
    }
    uint32_t b = f2u(x);
    int32_t e = (int32_t)(b >> 23) - 127;
    float m = u2f((b & 0x7fffffu) | 0x3f800000u); /* [1, 2) */
    if (m > 1.41421354f) {
        m = m * 0.5f;
        e++;
    }
    float f = m - 1.0f;
    float d = f + 2.0f;
    float s = f / d;
    float s2 = s * s;
    float p = 1.11111111e-1f;
    p = p * s2;
    p = p + 1.42857143e-1f;
    p = p * s2;
    p = p + 2.0e-1f;
    p = p * s2;
    p = p + 3.33333333e-1f;
    p = p * s2;
    p = p + 1.0f;
    p = p * s;
    p = p + p;
    float r = (float)e * 0.693147182f;
    return r + p;
}

FQT_API int32_t fqt_quantize_f(const float *v, const float *s, int32_t z, int32_t rounding,
                               uint32_t noise)
{
    return fqt_quant_f(*v, *s, z, rounding, noise);
}

FQT_API void fqt_mathf_v(int32_t op, const float *x, float *y, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        y[i] = op == 0 ? fqt_sqrtf(x[i]) : (op == 1 ? fqt_expf(x[i]) : fqt_logf(x[i]));
    }
}
