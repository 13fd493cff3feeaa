/* The backward kernels' inner loops: row accumulation (fqt.h) and the requantization of a
 * run of accumulators (fqt_internal.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_rowacc_u8(int32_t *acc, const uint8_t *row, int32_t row_zero, int32_t scale,
                           int32_t n)
{
    fqt_rowacc(acc, row, row_zero, scale, n);
}

/* clamp(v, 0, 255) (USAT where the core has it). */
static inline __attribute__((always_inline)) int32_t sat_u8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    return (int32_t)__usat(v, 8);
#else
    return fqt_clamp(v, 0, 255);
#endif
}

/* The running minimum mn and maximum mn + span (span = mx - mn mod 2^32, mn <= mx): a lies
 * in [mn, mx] iff (uint32_t)(a - mn) <= span, one compare per element; the rare element
 * outside widens the range. */
static inline __attribute__((always_inline)) void mm_fold(int32_t a, int32_t *mn,
                                                          uint32_t *span)
{
    if (__builtin_expect((uint32_t)a - (uint32_t)*mn > *span, 0)) {
        uint32_t mx = (uint32_t)*mn + *span;
        if (a < *mn) {
            *mn = a;
        } else {
            mx = (uint32_t)a;
        }
        *span = mx - (uint32_t)*mn;
    }
}

/* The loop of mode FQT_RQ_HI_SAT (t >= 32: R(M a) is the high word of a * multiplier +
 * offset, shifted right by t - 32; the output clamp is [0, 255]). */
#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define FQT_NO_SMULL 1
/* ARMv6-M has no 32x32 -> 64 multiply (gcc would call __aeabi_lmul for every element):
 * hi:lo = a * b exactly from 16-bit halves, a = ah 2^16 + al, b = bh 2^16 + bl (ah, bh
 * signed: arithmetic shifts; al, bl unsigned): every partial product fits 32 bits, and a
 * signed x splits exactly as (x >> 16) 2^16 + (x & 0xFFFF).  The minimum and maximum are a
 * pass of their own (fewer live registers in the multiply loop). */
/* out[i] = clamp(((hi(acc[i] * b) + c + carry) >> sh) + yz, 0, 255), b = bh 2^16 + bl: the
 * high word of the product from 16-bit halves.  With a = ah 2^16 + al: t = (al bl >> 16) +
 * al bh and u = ah bl + (t & 0xFFFF) cannot overflow int32 (al, bl < 2^16; |ah|, |bh| <=
 * 2^15); a b = (ah bh + (t >> 16) + (u >> 16)) 2^32 + (u & 0xFFFF) 2^16 + (al bl & 0xFFFF).
 * half: the offset's low word is 2^31 (t = 32, nearest): its carry is bit 31 of the low
 * word, bit 15 of u.  A function of its own: few live values for the 8 low registers. */
static inline __attribute__((always_inline)) void
rq_m0(const int32_t *acc, uint8_t *out, int32_t n, int32_t mult, int32_t c, int32_t sh,
      int32_t yz, int half)
{
    const int32_t bh = mult >> 16, bl = (int32_t)((uint32_t)mult & 0xFFFFu);
    for (const int32_t *const end = acc + n; acc < end; acc++, out++) {
        const int32_t a = *acc;
        const int32_t ah = a >> 16, al = (int32_t)((uint32_t)a & 0xFFFFu);
        const int32_t t = (int32_t)(((uint32_t)al * (uint32_t)bl) >> 16) + al * bh;
        const int32_t u = ah * bl + (t & 0xFFFF);
        int32_t ph = ah * bh + (t >> 16) + (u >> 16) + c;
        if (half) {
            ph += (u >> 15) & 1;
        }
        int32_t v = (ph >> sh) + yz;
        if ((uint32_t)v > 255u) {
            v = v < 0 ? 0 : 255;
        }
        *out = (uint8_t)v;
    }
}

static __attribute__((noinline)) void rq_m0_half(const int32_t *acc, uint8_t *out,
                                                 int32_t n, int32_t mult, int32_t c,
                                                 int32_t sh, int32_t yz)
{
    rq_m0(acc, out, n, mult, c, sh, yz, 1);
}

static __attribute__((noinline)) void rq_m0_nohalf(const int32_t *acc, uint8_t *out,
                                                   int32_t n, int32_t mult, int32_t c,
                                                   int32_t sh, int32_t yz)
{
    rq_m0(acc, out, n, mult, c, sh, yz, 0);
}

/* The minimum and maximum are a pass of their own (fewer live registers in the multiply
 * loop).  y_zero is folded into the offset's high word where it can be: (v >> sh) + yz =
 * (v + (yz << sh)) >> sh, and |v| <= 2^30 + 2^21 keeps the sum within int32 when sh <= 22
 * and |yz| < 256. */
static inline __attribute__((always_inline)) void
requant_loop(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n, int32_t *mm)
{
    if (n > 0) {
        int32_t mn = mm[0];
        uint32_t span = (uint32_t)mm[1] - (uint32_t)mm[0];
        if (mm[0] > mm[1]) { /* empty so far: the first element starts the range */
            mn = acc[0];
            span = 0;
        }
        for (const int32_t *p = acc, *const end = acc + n; p < end; p++) {
            mm_fold(*p, &mn, &span);
        }
        mm[0] = mn;
        mm[1] = (int32_t)((uint32_t)mn + span);
    }
    const int32_t sh = r->sh;
    int32_t c = (int32_t)(r->rnd >> 32), yz = r->yz;
    if (sh <= 22 && yz > -256 && yz < 256) {
        c += yz * (1 << sh);
        yz = 0;
    }
    if ((uint32_t)r->rnd) {
        rq_m0_half(acc, out, n, r->mult, c, sh, yz);
    } else {
        rq_m0_nohalf(acc, out, n, r->mult, c, sh, yz);
    }
}
#else
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* The high word of a * b + (c << 32) (SMMLA) and of a * b + 2^31 (SMMULR): the whole
 * product and rounding offset in one instruction (exact: the instructions form the 64-bit
 * sum and take its top half). */
static inline int32_t smmla(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

static inline int32_t smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#endif

/* One element; half: the offset is 2^31 exactly (t = 32, nearest), a constant. */
static inline __attribute__((always_inline)) int32_t
requant_one(int32_t a, int32_t mult, int32_t sh, int64_t rnd, int32_t yz, int half)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    const int32_t v = half ? smmulr(a, mult) : smmla(a, mult, (int32_t)(rnd >> 32));
#else
    (void)half;
    const int32_t v = (int32_t)(((int64_t)a * mult + rnd) >> 32);
#endif
    return sat_u8((v >> sh) + yz);
}

/* Two elements per iteration. */
static inline __attribute__((always_inline)) void
requant_loop2(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n, int32_t *mm,
              int half)
{
    int32_t mn = mm[0], mx = mm[1];
    const int32_t mult = r->mult, sh = r->sh, yz = r->yz;
    const int64_t rnd = r->rnd;
    const int32_t *end = acc + (n & ~1);
    for (; acc < end; acc += 2, out += 2) {
        const int32_t a = acc[0], b = acc[1];
        mn = a < mn ? a : mn;
        mx = a > mx ? a : mx;
        mn = b < mn ? b : mn;
        mx = b > mx ? b : mx;
        out[0] = (uint8_t)requant_one(a, mult, sh, rnd, yz, half);
        out[1] = (uint8_t)requant_one(b, mult, sh, rnd, yz, half);
    }
    if (n & 1) {
        const int32_t a = *acc;
        mn = a < mn ? a : mn;
        mx = a > mx ? a : mx;
        *out = (uint8_t)requant_one(a, mult, sh, rnd, yz, half);
    }
    mm[0] = mn;
    mm[1] = mx;
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* SMMLAR: the high word of a * b + (c << 32) + 2^31. */
static inline int32_t smmlar(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}

/* y_zero folded into the multiply: (v >> sh) + yz = (v + (yz << sh)) >> sh exactly, and
 * v + (yz << sh) is the high word of a * mult + rnd + ((yz << sh) << 32), one SMMLA (SMMLAR
 * when the offset is 2^31: t = 32, nearest, sh = 0).  Needs |yz| < 256 and sh <= 22: then
 * |v| <= 2^30 + 1 and the sum stays within int32 and the 64-bit sum within int64.  Four
 * elements per iteration (one LDM), the output clamp USAT. */
static inline __attribute__((always_inline)) void
requant_loop4(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n, int32_t *mm,
              int half)
{
    const int32_t mult = r->mult, sh = r->sh;
    const int32_t c = half ? r->yz : (int32_t)(r->rnd >> 32) + (r->yz << sh);
    int32_t mn = mm[0];
    uint32_t span = (uint32_t)mm[1] - (uint32_t)mm[0];
    if (mm[0] > mm[1]) { /* empty so far: the first element starts the range */
        mn = acc[0];
        span = 0;
    }
    const int32_t *const end4 = acc + (n & ~3), *const end = acc + n;
    for (; acc < end4; acc += 4, out += 4) {
        const int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
        mm_fold(a0, &mn, &span);
        mm_fold(a1, &mn, &span);
        mm_fold(a2, &mn, &span);
        mm_fold(a3, &mn, &span);
        if (half) {
            out[0] = (uint8_t)__usat(smmlar(a0, mult, c), 8);
            out[1] = (uint8_t)__usat(smmlar(a1, mult, c), 8);
            out[2] = (uint8_t)__usat(smmlar(a2, mult, c), 8);
            out[3] = (uint8_t)__usat(smmlar(a3, mult, c), 8);
        } else {
            out[0] = (uint8_t)__usat(smmla(a0, mult, c) >> sh, 8);
            out[1] = (uint8_t)__usat(smmla(a1, mult, c) >> sh, 8);
            out[2] = (uint8_t)__usat(smmla(a2, mult, c) >> sh, 8);
            out[3] = (uint8_t)__usat(smmla(a3, mult, c) >> sh, 8);
        }
    }
    for (; acc < end; acc++, out++) {
        const int32_t a = *acc;
        mm_fold(a, &mn, &span);
        *out = (uint8_t)__usat(half ? smmlar(a, mult, c) : smmla(a, mult, c) >> sh, 8);
    }
    if (n > 0) {
        mm[0] = mn;
        mm[1] = (int32_t)((uint32_t)mn + span);
    }
}
#endif

static inline __attribute__((always_inline)) void
requant_loop(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n, int32_t *mm)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    if (r->sh <= 22 && r->yz > -256 && r->yz < 256) {
        if ((uint32_t)r->rnd) {
            requant_loop4(r, acc, out, n, mm, 1);
        } else {
            requant_loop4(r, acc, out, n, mm, 0);
        }
        return;
    }
#endif
    if ((uint32_t)r->rnd) {
        requant_loop2(r, acc, out, n, mm, 1);
    } else {
        requant_loop2(r, acc, out, n, mm, 0);
    }
}
#endif

void fqt_requant_u8(const fqt_rq_t *r, const int32_t *acc, uint8_t *out, int32_t n,
                    int32_t index, int32_t *mm)
{
    /* the backward error's own mode (t >= 32, clamp [0, 255], nearest or floor) has its
     * loop; the others take fqt_out_u8 per element (the same values) */
    switch (r->mode) {
    case FQT_RQ_HI_SAT:
        requant_loop(r, acc, out, n, mm);
        break;
    default: {
        int32_t mn = mm[0], mx = mm[1];
        for (int32_t i = 0; i < n; i++) {
            const int32_t a = acc[i];
            mn = a < mn ? a : mn;
            mx = a > mx ? a : mx;
            out[i] = fqt_out_u8(a, r->q, index + i);
        }
        mm[0] = mn;
        mm[1] = mx;
    }
    }
}

FQT_API void fqt_requantize_v(const int32_t *acc, uint8_t *out, int32_t n,
                              const fqt_quant_params_t *q, int32_t *stats)
{
    fqt_rq_t rq;
    fqt_rq_init(&rq, q);
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    fqt_requant_u8(&rq, acc, out, n, 0, mm);
    stats[0] = mm[0];
    stats[1] = mm[1];
}
