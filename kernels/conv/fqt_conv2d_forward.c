/* Conv2D forward pass (see fqt.h): per pair of output pixels, their input patches widened
 * once to int16 with the input zero point removed (padding becomes 0), then 2 filters x 2
 * pixels per inner loop, the requantization inline.
 *
 * Zero-point algebra.  p = x - x_zero (0 in the padding), so
 *   acc = sum_k (w_k - w_zero) p_k + bias = sum_k w_k p_k - w_zero * sum_k p_k + bias,
 * sum_k p_k once per pixel; all of it modulo 2^32, as the reference int32 sum.
 *
 * Scratch (`patch`, 4-byte aligned, int16 values; Kp = K rounded up to even):
 *   [0, 2 Kp): the patches of the current pixel pair, interleaved word by word (word j of
 *   slot 0, word j of slot 1, ...: one pointer and adjacent loads for both pixels); an odd
 *   last pixel goes to slot 0 alone.  in_c > 1: the first K4 = K & ~3 values in groups of
 *   4 stored "reordered" p0 p2 p1 p3, the order in which SMLAD meets the weight bytes
 *   widened by UXTB16 (bytes 0, 2 and, rotated, 1, 3); the K - K4 others in order; an odd
 *   K's pad not written.  in_c == 1: in order, the pad 0; then [2 Kp, 2 Kp + out_c Kp):
 *   the weights repacked once per call, w - w_zero padded with 0 to Kp values per filter,
 *   pairs of filters (0 1, 2 3, ...) interleaved word by word, an odd last filter in order:
 *   SMLAD on int16 pairs of both, no zero-point term, no byte widening in the loop.
 *
 * The accumulators (bias included) of a pixel pair (in_c > 1; per chunk of CV_NB / 2
 * filters) or of a run of pixels (in_c == 1, Kp == 10) go to a stack buffer and are
 * requantized by cv_rq in one loop (per tensor, high word only, act range inside [0, 255]:
 * y_zero folded into the offset, on DSP cores 4 outputs per pass in asm with USAT and a
 * USUB8/SEL byte clamp, on ARMv6-M cv_rq_m0).  DSP cores: the in_c > 1 inner loop is cv_mac22
 * (asm), run over a chunk's filter pairs by cv_pairs (accumulators start at bias - w_zero
 * sum p); in_c == 1 with Kp == 10 (3x3) runs cv_c1k10, the patch in registers; the scratch
 * is left as described above in every path.  ARMv6-M (cout <= CV_NB, >= 2 pixels): cv_m0,
 * one MULS for the products of a weight with both pixels (raw bytes packed in a word), the
 * inner loop in asm with the sums in high registers (8 steps per pass); the scratch rewritten
 * at the end as above. */
#include "conv/fqt_conv_common.h"

#if defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define CV_NO_SMULL 1
#endif
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define CV_DSP 1
#endif

/* ---------------------------------------------------------------- requantization */

/* Per call. */
typedef struct {
    const int32_t *mult, *shift; /* q->ch_mult / ch_shift, or the tensor's (step 0) */
    int32_t step;
    int32_t nearest, stoch;
    uint32_t seed;
    int32_t yz, amin, amax;
} cv_q_t;

/* Per filter: M = mult 2^-t, t = 31 - shift in [1, 62]; the constant offset (nearest:
 * 2^(t-1); floor and stochastic: 0) as hi:lo. */
typedef struct {
    int32_t mult, t;
    uint32_t olo;
    int32_t ohi;
} cv_ch_t;

static inline __attribute__((always_inline)) cv_ch_t cv_ch(const cv_q_t *r, int32_t co, int hi)
{
    cv_ch_t c;
    c.mult = r->mult[co * r->step];
    c.t = 31 - r->shift[co * r->step];
    c.olo = 0;
    if (hi) { /* t >= 32; nearest: t > 32, the offset 2^(t-33) in the high word */
        c.ohi = (int32_t)(((uint32_t)r->nearest << (c.t - 32)) >> 1);
        return c;
    }
    c.ohi = 0;
    if (r->nearest) {
        if (c.t <= 32) {
            c.olo = 1u << (c.t - 1);
        } else {
            c.ohi = (int32_t)(1u << (c.t - 33));
        }
    }
    return c;
}

#ifdef CV_DSP
/* The high word of a * b + (c << 32), exactly (SMMLA). */
static inline __attribute__((always_inline)) int32_t cv_smmla(int32_t a, int32_t b, int32_t c)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(c));
    return r;
}
#endif

/* y = clamp(R(M acc) + y_zero, act_min, act_max): fqt_out_u8_m.  R: the low word of
 * (acc * mult + offset) >> t, the 64-bit sum formed exactly (SMLAL / SMMLA; on ARMv6-M from
 * 16-bit halves); hi: t >= 32 and the offset's low word 0, so only the high word of the sum
 * is needed.  The + y_zero saturates: a saturated sum lies beyond the same clamp bound as
 * the int64 sum, so the byte is the same. */
static inline __attribute__((always_inline)) uint8_t
cv_out(int32_t acc, const cv_ch_t *c, const cv_q_t *r, int32_t idx, int stoch, int hi)
{
    const int32_t t = c->t;
    uint32_t olo = c->olo;
    int32_t ohi = c->ohi;
    if (stoch) {
        const uint32_t n = fqt_hash32_inl(r->seed + (uint32_t)idx * FQT_GOLDEN);
        if (t <= 32) {
            olo = n >> (32 - t);
        } else {
            olo = n << (t - 32);
            ohi = (int32_t)(n >> (64 - t));
        }
    }
    int32_t v;
#ifdef CV_NO_SMULL
    {
        /* hi:lo = acc * mult exactly: a = ah 2^16 + al, b = bh 2^16 + bl (ah, bh signed,
         * al, bl unsigned; every partial product fits 32 bits), fqt_rowacc_u8.c */
        const int32_t a = acc, b = c->mult;
        const int32_t ah = a >> 16, bh = b >> 16;
        const uint32_t al = (uint32_t)a & 0xFFFFu, bl = (uint32_t)b & 0xFFFFu;
        const uint32_t ll = al * bl;
        const int32_t hl = ah * (int32_t)bl, lh = (int32_t)al * bh;
        const uint32_t mid = (ll >> 16) + ((uint32_t)hl & 0xFFFFu) + ((uint32_t)lh & 0xFFFFu);
        int32_t ph = ah * bh + (hl >> 16) + (lh >> 16) + (int32_t)(mid >> 16) + ohi;
        if (hi) {
            v = ph >> (t - 32);
        } else {
            const uint32_t pl0 = (mid << 16) | (ll & 0xFFFFu);
            const uint32_t pl = pl0 + olo;
            ph += (int32_t)(pl < pl0);
            v = t >= 32 ? ph >> (t - 32) : (int32_t)((pl >> t) | ((uint32_t)ph << (32 - t)));
        }
    }
#else
    if (hi) {
#ifdef CV_DSP
        v = cv_smmla(acc, c->mult, ohi) >> (t - 32);
#else
        v = (int32_t)((((int64_t)acc * c->mult) >> 32) + ohi) >> (t - 32);
#endif
    } else {
        const int64_t p = (int64_t)acc * c->mult +
                          (int64_t)(((uint64_t)(uint32_t)ohi << 32) | olo);
        const uint32_t lo = (uint32_t)p;
        const int32_t ph = (int32_t)((uint64_t)p >> 32);
        v = t >= 32 ? ph >> (t - 32) : (int32_t)((lo >> t) | ((uint32_t)ph << (32 - t)));
    }
#endif
    int32_t u;
#ifdef CV_DSP
    u = __qadd(v, r->yz);
#else
    if (__builtin_add_overflow(v, r->yz, &u)) {
        u = v < 0 ? INT32_MIN : INT32_MAX;
    }
#endif
    return (uint8_t)(u < r->amin ? r->amin : (u > r->amax ? r->amax : u));
}

/* ---------------------------------------------------------------- patches */

/* Words of the patch and of the repacked weights: 4-byte aligned, read and written as
 * int16 too. */
typedef uint32_t __attribute__((may_alias, aligned(4))) cv_w32;

#ifdef CV_DSP
static inline __attribute__((always_inline)) uint32_t cv_ld32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4); /* unaligned LDR: allowed on ARMv7E-M */
    return v;
}

/* p[off] by a single LDR: gcc fuses adjacent loads into LDRD, which on the M4 takes 3
 * cycles and ends the pipelining of LDRs (2 for the first, 1 for each next one). */
static inline __attribute__((always_inline)) uint32_t cv_ldw(const cv_w32 *p, int off)
{
    uint32_t v;
    __asm__("ldr %0, %1" : "=r"(v) : "m"(p[off]));
    return v;
}

static inline __attribute__((always_inline)) uint32_t cv_uxtb16_ror8(uint32_t v)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
    return r;
}

/* The 2 filters x 2 pixels inner loop over n >= 1 groups of 4 values (in_c > 1): per group
 * A, B the weight words of filters a, b, X0 Y0 / X1 Y1 the patch words of pixels 0, 1
 * (values 0 2 / 1 3, see cv_pos); UXTB16 widens bytes 0 2 and (ROR 8) 1 3 of A and B, SMLAD
 * multiplies both halves: a00 += A0 X0 + A2 X2 + A1 X1 + A3 X3 and so on.  In asm: the 13
 * values stay in registers and the loads come in runs (an LDR right after an LDR without
 * dependency takes 1 cycle on the M4, LDRD 3), two groups per loop pass; 20 cycles per 16
 * MACs on the M4 model against 28 for gcc's code. */
#define CV_G                                                                                \
    "ldr %[A], [%[wa]], #4\n\t"                                                             \
    "ldr %[X], [%[pp]], #16\n\t"                                                            \
    "ldr %[B], [%[wb]], #4\n\t"                                                             \
    "ldr %[Y], [%[pp], #-12]\n\t"                                                           \
    "uxtb16 %[t], %[A]\n\t"                                                                 \
    "smlad %[a00], %[t], %[X], %[a00]\n\t"                                                  \
    "smlad %[a01], %[t], %[Y], %[a01]\n\t"                                                  \
    "uxtb16 %[t], %[B]\n\t"                                                                 \
    "smlad %[a10], %[t], %[X], %[a10]\n\t"                                                  \
    "smlad %[a11], %[t], %[Y], %[a11]\n\t"                                                  \
    "ldr %[X], [%[pp], #-8]\n\t"                                                            \
    "ldr %[Y], [%[pp], #-4]\n\t"                                                            \
    "uxtb16 %[A], %[A], ror #8\n\t"                                                         \
    "uxtb16 %[B], %[B], ror #8\n\t"                                                         \
    "smlad %[a00], %[A], %[X], %[a00]\n\t"                                                  \
    "smlad %[a01], %[A], %[Y], %[a01]\n\t"                                                  \
    "smlad %[a10], %[B], %[X], %[a10]\n\t"                                                  \
    "smlad %[a11], %[B], %[Y], %[a11]\n\t"

static inline __attribute__((always_inline)) void
cv_mac22(const uint8_t *wa, const uint8_t *wb, const uint32_t *pp, uint32_t n, int32_t *p00,
         int32_t *p01, int32_t *p10, int32_t *p11)
{
    int32_t a00 = *p00, a01 = *p01, a10 = *p10, a11 = *p11;
    uint32_t A, B, X, Y, t;
    /* n odd: one group first; then pairs of groups */
    __asm__("lsrs %[n], %[n], #1\n\t"
            "bcc 1f\n\t" CV_G "cmp %[n], #0\n\t"
            "beq 2f\n"
            "1:\n\t" CV_G CV_G "subs %[n], %[n], #1\n\t"
            "bne 1b\n"
            "2:\n"
            : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11),
              [wa] "+r"(wa), [wb] "+r"(wb), [pp] "+r"(pp), [n] "+r"(n), [A] "=&r"(A),
              [B] "=&r"(B), [X] "=&r"(X), [Y] "=&r"(Y), [t] "=&r"(t)
            :
            : "cc", "memory");
    *p00 = a00;
    *p01 = a01;
    *p10 = a10;
    *p11 = a11;
}
#undef CV_G

/* np >= 1 pairs of filters (weights from wa, K = K4 > 0, n = K / 4 groups) with the patch
 * pair P: the accumulators start at bias - w_zero sum p (sp0, sp1), filter pair j's go to
 * o0[2 j], o0[2 j + 1] (pixel 0) and o1[...] (pixel 1).  Few values live around the asm. */
static __attribute__((noinline)) void cv_pairs(const uint8_t *wa, int32_t K, const uint32_t *P,
                                               const int32_t *bias, int32_t sp0, int32_t sp1,
                                               int32_t *o0, int32_t *o1, int32_t np)
{
    const uint32_t n = (uint32_t)K >> 2;
    const int32_t d = sp0 - sp1;
    do {
        int32_t a00 = -sp0, a10 = -sp0;
        if (bias) {
            a00 += bias[0];
            a10 += bias[1];
            bias += 2;
        }
        int32_t a01 = a00 + d, a11 = a10 + d;
        cv_mac22(wa, wa + K, P, n, &a00, &a01, &a10, &a11);
        o0[0] = a00;
        o0[1] = a10;
        o0 += 2;
        o1[0] = a01;
        o1[1] = a11;
        o1 += 2;
        wa += 2 * K;
    } while (--np);
}
#endif

/* Everything of one call. */
typedef struct {
    const uint8_t *x, *w;
    const int32_t *bias;
    uint8_t *y;
    const fqt_shape_t *s;
    int16_t *P;  /* the two interleaved patch slots */
    int16_t *Wq; /* in_c == 1: the repacked weights */
    int32_t K, K4, Kp, cout, xz, wz, quad;
    cv_q_t r;
} cv_t;

/* Position of patch value k in its slot: groups of 4 below k4 reordered 0 2 1 3 (bits 0
 * and 1 of k swapped), then the slot's word j at word 2 j (slot 0) or 2 j + 1 (slot 1):
 * halfword 4 (h >> 1) + (h & 1) of the slot's base, h the reordered position. */
static inline __attribute__((always_inline)) int32_t cv_pos(int32_t k, int32_t k4)
{
    const int32_t h = k < k4 ? (k & ~3) | ((k & 1) << 1) | ((k >> 1) & 1) : k;
    return 2 * h - (h & 1);
}

/* The patch of output pixel (oh, ow) into slot Ps (P or P + 2): values p = x - x_zero,
 * padding 0; returns sum p.  Per kernel row the in-range taps are one contiguous run of x.
 * quad (in_c % 4 == 0, DSP cores): 4 bytes widened per step, every group of 4 inside one
 * run. */
static __attribute__((noinline)) int32_t cv_patch(const cv_t *c, int32_t oh, int32_t ow,
                                                   int16_t *Ps)
{
    const fqt_shape_t *s = c->s;
    const int32_t cin = s->in_c, KW = s->k_w, row = KW * cin, k4 = c->K4, xz = c->xz;
    const int32_t W = s->in_w, H = s->in_h;
    const int32_t ih0 = oh * s->stride_h - s->pad_top;
    const int32_t iw0 = ow * s->stride_w - s->pad_left;
    /* in-range taps kw in [a, b) */
    const int32_t a = iw0 < 0 ? (-iw0 < KW ? -iw0 : KW) : 0;
    const int32_t b = W - iw0 < KW ? W - iw0 : KW;
    const int32_t ca = a * cin, cb = (b > a ? b : a) * cin;
    const uint8_t *src = c->x + (ih0 * W + iw0) * cin; /* row ih0, tap 0 */
#ifdef CV_DSP
    if (c->quad && a == 0 && b == KW && ih0 >= 0 && ih0 + s->k_h <= H) {
        /* inside the image: k_h runs of row bytes, 4 widened per step */
        const uint32_t z2 = ((uint32_t)xz & 0xFFFFu) * 0x00010001u;
        uint32_t sx = 0;
        cv_w32 *d = (cv_w32 *)(void *)Ps;
        for (int32_t kh = 0; kh < s->k_h; kh++, src += W * cin) {
            const uint8_t *q = src, *qe = src + row;
            if ((row & 7) == 0) { /* 8 per pass: the loads back to back */
                for (; q < qe; q += 8, d += 8) {
                    const uint32_t v = cv_ld32(q), u = cv_ld32(q + 4);
                    const uint32_t v0 = __uxtb16(v), v1 = cv_uxtb16_ror8(v);
                    const uint32_t u0 = __uxtb16(u), u1 = cv_uxtb16_ror8(u);
                    sx = __usada8(v, 0, sx);
                    d[0] = __ssub16(v0, z2);
                    d[2] = __ssub16(v1, z2);
                    sx = __usada8(u, 0, sx);
                    d[4] = __ssub16(u0, z2);
                    d[6] = __ssub16(u1, z2);
                }
                continue;
            }
            for (; q < qe; q += 4, d += 4) {
                const uint32_t v = cv_ld32(q);
                d[0] = __ssub16(__uxtb16(v), z2);
                d[2] = __ssub16(cv_uxtb16_ror8(v), z2);
                sx = __usada8(v, 0, sx);
            }
        }
        return (int32_t)sx - c->K * xz;
    }
#endif
    int32_t sum = 0;
    int32_t k = 0;
    for (int32_t kh = 0; kh < s->k_h; kh++, k += row, src += W * cin) {
        const int32_t ih = ih0 + kh;
        int32_t c0 = ca, c1 = cb;
        if (ih < 0 || ih >= H) {
            c0 = c1 = row;
        }
#ifdef CV_DSP
        if (c->quad) {
            /* groups of 4 inside one tap: the slot's words 2 (k + j) / 4 and the next */
            const uint32_t z2 = ((uint32_t)xz & 0xFFFFu) * 0x00010001u;
            uint32_t sx = 0;
            cv_w32 *d = (cv_w32 *)(void *)(Ps + 2 * k);
            int32_t j = 0;
            for (; j < c0; j += 4, d += 4) {
                d[0] = 0;
                d[2] = 0;
            }
            for (; j < c1; j += 4, d += 4) {
                const uint32_t v = cv_ld32(src + j);
                d[0] = __ssub16(__uxtb16(v), z2);
                d[2] = __ssub16(cv_uxtb16_ror8(v), z2);
                sx = __usada8(v, 0, sx);
            }
            for (; j < row; j += 4, d += 4) {
                d[0] = 0;
                d[2] = 0;
            }
            sum += (int32_t)sx - (c1 - c0) * xz;
            continue;
        }
#endif
        for (int32_t j = 0; j < c0; j++) {
            Ps[cv_pos(k + j, k4)] = 0;
        }
        for (int32_t j = c0; j < c1; j++) {
            const int32_t v = (int32_t)src[j] - xz;
            sum += v;
            Ps[cv_pos(k + j, k4)] = (int16_t)v;
        }
        for (int32_t j = c1 < c0 ? c0 : c1; j < row; j++) {
            Ps[cv_pos(k + j, k4)] = 0;
        }
    }
    return sum;
}

/* The in_c == 1 patch of output pixel (oh, ow) into slot Ps: value h (in order) at
 * halfword 2 h - (h & 1).  No sum: the repacked weights hold no zero point. */
static __attribute__((noinline)) void cv_patch1(const cv_t *c, int32_t oh, int32_t ow,
                                                int16_t *Ps)
{
    const fqt_shape_t *s = c->s;
    const int32_t KW = s->k_w, KH = s->k_h, W = s->in_w, H = s->in_h, xz = c->xz;
    const int32_t ih0 = oh * s->stride_h - s->pad_top;
    const int32_t iw0 = ow * s->stride_w - s->pad_left;
    const uint8_t *src = c->x + ih0 * W + iw0;
    int16_t *d = Ps;
    int32_t st = 1; /* the step to the next position: 1, 3, 1, 3, ... (0 1 4 5 8 9 ...) */
    if (ih0 >= 0 && iw0 >= 0 && ih0 + KH <= H && iw0 + KW <= W) {
        /* inside the image: no bounds */
        for (int32_t kh = 0; kh < KH; kh++, src += W) {
            for (int32_t kw = 0; kw < KW; kw++) {
                *d = (int16_t)((int32_t)src[kw] - xz);
                d += st;
                st ^= 2;
            }
        }
        return;
    }
    for (int32_t kh = 0; kh < KH; kh++, src += W) {
        const int32_t rin = ih0 + kh >= 0 && ih0 + kh < H;
        for (int32_t kw = 0; kw < KW; kw++) {
            const int32_t in = rin && iw0 + kw >= 0 && iw0 + kw < W;
            *d = (int16_t)(in ? (int32_t)src[kw] - xz : 0);
            d += st;
            st ^= 2;
        }
    }
}

/* in_c == 1: the weights repacked into c->Wq, w - w_zero padded to Kp; pairs of filters
 * interleaved word by word, an odd last filter in order; the pads of both patch slots 0. */
static __attribute__((noinline)) void cv_repack1(const cv_t *c)
{
    const int32_t K = c->K, Kp = c->Kp, cout = c->cout;
    int16_t *P = c->P;
    for (int32_t co = 0; co < cout; co++) {
        const uint8_t *wc = c->w + co * K;
        const int32_t m = co & 1;
        int16_t *d = c->Wq + (co - m) * Kp;
        if (m || co + 1 < cout) {
            for (int32_t k = 0; k < Kp; k++) {
                d[4 * (k >> 1) + 2 * m + (k & 1)] = (int16_t)(k < K ? (int32_t)wc[k] - c->wz : 0);
            }
        } else {
            for (int32_t k = 0; k < Kp; k++) {
                d[k] = (int16_t)(k < K ? (int32_t)wc[k] - c->wz : 0);
            }
        }
    }
    if (K & 1) {
        P[2 * K - 1] = 0;
        P[2 * K + 1] = 0;
    }
}

/* ---------------------------------------------------------------- one output */

/* acc of filter co with the patch in slot Ps (sp: w_zero * sum p), bias added, folded into
 * the statistics mm and requantized into y[idx]: the odd filter and the odd pixel. */
static __attribute__((noinline)) int32_t cv_acc(const cv_t *c, int32_t co, const int16_t *Ps,
                                                int32_t sp, int cin1)
{
    int32_t acc = 0;
    if (cin1) {
        /* a pair's filter: every other word; an odd last filter: in order */
        const int32_t m = co & 1, paired = m || co + 1 < c->cout;
        const int16_t *W = c->Wq + (co - m) * c->Kp + 2 * m;
        const int32_t ws = paired ? 2 : 1;
        for (int32_t k = 0; k < c->Kp; k += 2) {
            const uint32_t A = *(const cv_w32 *)(const void *)(W + k * ws);
            const uint32_t X = *(const cv_w32 *)(const void *)(Ps + 2 * k);
#ifdef CV_DSP
            acc = __smlad(A, X, acc);
#else
            acc += (int16_t)A * (int16_t)X + ((int32_t)A >> 16) * ((int32_t)X >> 16);
#endif
        }
    } else {
        const uint8_t *wa = c->w + co * c->K;
        int32_t k = 0;
        for (; k < c->K4; k += 4) {
            const uint32_t X0 = *(const cv_w32 *)(const void *)(Ps + 2 * k);
            const uint32_t X1 = *(const cv_w32 *)(const void *)(Ps + 2 * k + 4);
#ifdef CV_DSP
            const uint32_t A = cv_ld32(wa + k);
            acc = __smlad(__uxtb16(A), X0, acc);
            acc = __smlad(cv_uxtb16_ror8(A), X1, acc);
#else
            acc += wa[k] * (int16_t)X0 + wa[k + 2] * ((int32_t)X0 >> 16) +
                   wa[k + 1] * (int16_t)X1 + wa[k + 3] * ((int32_t)X1 >> 16);
#endif
        }
        for (; k < c->K; k++) {
            acc += wa[k] * Ps[2 * k - (k & 1)];
        }
    }
    return acc + (c->bias ? c->bias[co] : 0) - sp;
}

static __attribute__((noinline)) void cv_one(const cv_t *c, int32_t co, const int16_t *Ps,
                                             int32_t sp, int32_t idx, int32_t *mm, int cin1)
{
    const int32_t acc = cv_acc(c, co, Ps, sp, cin1);
    mm[0] = acc < mm[0] ? acc : mm[0];
    mm[1] = acc > mm[1] ? acc : mm[1];
    const cv_ch_t ch = cv_ch(&c->r, co, 0);
    c->y[idx] = cv_out(acc, &ch, &c->r, idx, c->r.stoch, 0);
}

/* ---------------------------------------------------------------- the kernel */

#define CV_MINMAX(a)                                                                       \
    do {                                                                                   \
        mn = (a) < mn ? (a) : mn;                                                          \
        mx = (a) > mx ? (a) : mx;                                                          \
    } while (0)

/* Accumulators buffered per chunk of outputs (on the stack), then requantized in one loop:
 * the MAC loops keep few values live, the requantization its constants in registers. */
#define CV_NB 64

#ifdef CV_NO_SMULL
/* ARMv6-M per-tensor requantization of acc[0, n), n >= 1, into y[0, n), high word only:
 * k = {bl, bh, off, rng, amin, end (of y), sh}, M = bh 2^16 + bl (bl unsigned 16 bits),
 * hi(acc M) = ah bh + (ah bl + al bh + (al bl >> 16)) >> 16 (acc = ah 2^16 + al) in
 * 32-bit pieces as cv_out: lo = (al bl >> 16) + (al bh & 0xFFFF) + (ah bl & 0xFFFF),
 * hi = ah bh + (al bh >> 16) + (ah bl >> 16) + (lo >> 16).  Then v = (hi + off) >> sh
 * with off = ohi + (y_zero - act_min) << sh: v = R + y_zero - act_min, and
 * y = act_min + clamp(v, 0, rng), rng = act_max - act_min, one unsigned compare.
 * The constants in r8-r12, the end of y on the stack; 37 cycles per output. */
static __attribute__((noinline)) void cv_rq_m0(const int32_t *acc, uint8_t *y, const int32_t *k)
{
    uint32_t a, al, t, u;
    __asm__ volatile(".syntax unified\n\t"
                     "ldr %[t], [%[k], #0]\n\t"
                     "mov r8, %[t]\n\t"
                     "ldr %[t], [%[k], #4]\n\t"
                     "mov r9, %[t]\n\t"
                     "ldr %[t], [%[k], #8]\n\t"
                     "mov r10, %[t]\n\t"
                     "ldr %[t], [%[k], #12]\n\t"
                     "mov r11, %[t]\n\t"
                     "ldr %[t], [%[k], #16]\n\t"
                     "mov r12, %[t]\n\t"
                     "ldr %[t], [%[k], #20]\n\t"
                     "push {%[t]}\n\t"
                     "ldr %[k], [%[k], #24]\n"
                     "1:\n\t"
                     "ldmia %[p]!, {%[a]}\n\t"
                     "uxth %[al], %[a]\n\t"
                     "asrs %[a], %[a], #16\n\t"         /* a = ah */
                     "mov %[t], r8\n\t"
                     "muls %[t], %[al], %[t]\n\t"
                     "lsrs %[t], %[t], #16\n\t"         /* t = al bl >> 16 */
                     "mov %[u], r9\n\t"
                     "muls %[u], %[al], %[u]\n\t"       /* u = al bh */
                     "uxth %[al], %[u]\n\t"
                     "adds %[t], %[t], %[al]\n\t"
                     "asrs %[u], %[u], #16\n\t"
                     "mov %[al], r9\n\t"
                     "muls %[al], %[a], %[al]\n\t"      /* ah bh */
                     "adds %[u], %[u], %[al]\n\t"
                     "mov %[al], r8\n\t"
                     "muls %[a], %[al], %[a]\n\t"       /* a = ah bl */
                     "uxth %[al], %[a]\n\t"
                     "adds %[t], %[t], %[al]\n\t"
                     "asrs %[a], %[a], #16\n\t"
                     "adds %[u], %[u], %[a]\n\t"
                     "lsrs %[t], %[t], #16\n\t"
                     "adds %[u], %[u], %[t]\n\t"        /* u = hi(acc M) */
                     "add %[u], r10\n\t"
                     "asrs %[u], %[k]\n\t"
                     "cmp %[u], r11\n\t"
                     "bls 2f\n\t"
                     "asrs %[al], %[u], #31\n\t"        /* below 0: 0, above rng: rng */
                     "mvns %[al], %[al]\n\t"
                     "mov %[u], r11\n\t"
                     "ands %[u], %[al]\n"
                     "2:\n\t"
                     "add %[u], r12\n\t"
                     "strb %[u], [%[y]]\n\t"
                     "adds %[y], #1\n\t"
                     "ldr %[al], [sp]\n\t"
                     "cmp %[y], %[al]\n\t"
                     "bne 1b\n\t"
                     "add sp, #4\n"
                     : [p] "+l"(acc), [y] "+l"(y), [k] "+l"(k), [a] "=&l"(a), [al] "=&l"(al),
                       [t] "=&l"(t), [u] "=&l"(u)
                     :
                     : "r8", "r9", "r10", "r11", "r12", "cc", "memory");
}
#endif

/* acc[0, n): the accumulators (bias included) of outputs idx, idx + 1, ... (channel co0,
 * co0 + 1, ... cycling through cout) into y[idx...], folded into the statistics mm. */
static __attribute__((noinline)) void cv_rq(const cv_q_t *r, const int32_t *acc, int32_t n,
                                            uint8_t *y, int32_t idx, int32_t co0, int32_t cout,
                                            int32_t *mm, int hi)
{
    int32_t mn = mm[0], mx = mm[1];
    const int32_t *end = acc + n;
    y += idx;
    if (hi && !r->step) {
        /* per tensor, the high word only: v = (hi(acc * mult) + ohi) >> (t - 32) */
        const cv_ch_t ch = cv_ch(r, 0, 1);
#ifdef CV_NO_SMULL
        if (ch.t <= 52) {
            /* the statistics first (a loop of its own: few registers live) */
            for (const int32_t *p = acc; p < end; p++) {
                const int32_t a = *p;
                mn = a < mn ? a : mn;
                mx = a > mx ? a : mx;
            }
            /* hi(acc * mult) from 16-bit halves as cv_out; |hi| <= 2^30 and ohi <= 2^29,
             * so with sh = t - 32 <= 20 the y_zero goes into the offset as yz << sh
             * (adding a multiple of 2^sh commutes with the shift, no overflow) and the
             * + y_zero needs no saturation */
            const int32_t sh = ch.t - 32, bh = ch.mult >> 16;
            const uint32_t bl = (uint32_t)ch.mult & 0xFFFFu;
            const int32_t amin = r->amin, amax = r->amax;
            if (n > 0 && r->yz >= 0 && r->yz <= 255 && amin >= 0 && amin <= amax && amax <= 255) {
                /* |hi| <= 2^30, ohi <= 2^19, |y_zero - act_min| << sh < 2^28: no overflow */
                const int32_t k[7] = {(int32_t)bl, bh,
                                      ch.ohi + (int32_t)((uint32_t)(r->yz - amin) << sh),
                                      amax - amin, amin, (int32_t)(uintptr_t)(y + n), sh};
                cv_rq_m0(acc, y, k);
                mm[0] = mn;
                mm[1] = mx;
                return;
            }
            const int32_t off = ch.ohi + (int32_t)((uint32_t)r->yz << sh);
            for (; acc < end; acc++, y++) {
                const int32_t a = *acc;
                const int32_t ah = a >> 16;
                const uint32_t al = (uint32_t)a & 0xFFFFu;
                const uint32_t ll = al * bl;
                const int32_t hl = ah * (int32_t)bl, lh = (int32_t)al * bh;
                const uint32_t mid =
                    (ll >> 16) + ((uint32_t)hl & 0xFFFFu) + ((uint32_t)lh & 0xFFFFu);
                int32_t v = (ah * bh + (hl >> 16) + (lh >> 16) + (int32_t)(mid >> 16) + off) >> sh;
                v = v < amin ? amin : v;
                v = v > amax ? amax : v;
                *y = (uint8_t)v;
            }
            mm[0] = mn;
            mm[1] = mx;
            return;
        }
#endif
#ifdef CV_DSP
        const int32_t mult = ch.mult, sh = ch.t - 32, ohi = ch.ohi;
        const int32_t yz = r->yz, amin = r->amin, amax = r->amax;
        if (sh <= 20 && yz >= 0 && yz <= 255 && amin >= 0 && amin <= amax && amax <= 255) {
            /* four per pass: |hi| <= 2^30, ohi <= 2^19, y_zero << sh < 2^28, so y_zero
             * goes into the offset (a multiple of 2^sh commutes with the shift) and
             * v = R + y_zero without saturation; USAT clamps to [0, 255] (act_min >= 0,
             * act_max <= 255: the same byte), then the four bytes to [act_min, act_max]
             * by USUB8/SEL */
            const int32_t oy = ohi + (int32_t)((uint32_t)yz << sh);
            const uint32_t lo4 = (uint32_t)amin * 0x01010101u, hi4 = (uint32_t)amax * 0x01010101u;
            if (end - acc >= 4) {
                /* k: the end of the groups of 4, the bounds in the four bytes */
                const int32_t *e4 = acc + ((end - acc) & ~3);
                const uint32_t k[3] = {(uint32_t)(uintptr_t)e4, lo4, hi4};
                uint32_t a, b, cc, dd;
#define CV_MM(v)                                                                            \
    "cmp %[" #v "], %[mn]\n\t"                                                              \
    "it lt\n\t"                                                                             \
    "movlt %[mn], %[" #v "]\n\t"                                                            \
    "cmp %[" #v "], %[mx]\n\t"                                                              \
    "it gt\n\t"                                                                             \
    "movgt %[mx], %[" #v "]\n\t"
                __asm__ volatile("1:\n\t"
                                 "ldr %[a], [%[p]]\n\t"
                                 "ldr %[b], [%[p], #4]\n\t"
                                 "ldr %[c], [%[p], #8]\n\t"
                                 "ldr %[d], [%[p], #12]\n\t"
                                 "adds %[p], #16\n\t" CV_MM(a) CV_MM(b)
                                 "smmla %[a], %[a], %[mult], %[oy]\n\t"
                                 "smmla %[b], %[b], %[mult], %[oy]\n\t" CV_MM(c) CV_MM(d)
                                 "smmla %[c], %[c], %[mult], %[oy]\n\t"
                                 "smmla %[d], %[d], %[mult], %[oy]\n\t"
                                 "asr %[a], %[a], %[sh]\n\t"
                                 "asr %[b], %[b], %[sh]\n\t"
                                 "usat %[a], #8, %[a]\n\t"
                                 "usat %[b], #8, %[b]\n\t"
                                 "asr %[c], %[c], %[sh]\n\t"
                                 "asr %[d], %[d], %[sh]\n\t"
                                 "orr %[a], %[a], %[b], lsl #8\n\t"
                                 "usat %[c], #8, %[c]\n\t"
                                 "usat %[d], #8, %[d]\n\t"
                                 "ldr %[b], [%[k], #4]\n\t"
                                 "orr %[a], %[a], %[c], lsl #16\n\t"
                                 "orr %[a], %[a], %[d], lsl #24\n\t"
                                 "ldr %[d], [%[k], #8]\n\t"
                                 "usub8 %[c], %[a], %[b]\n\t"
                                 "sel %[a], %[a], %[b]\n\t"
                                 "usub8 %[c], %[a], %[d]\n\t"
                                 "sel %[a], %[d], %[a]\n\t"
                                 "ldr %[b], [%[k]]\n\t"
                                 "str %[a], [%[y]], #4\n\t"
                                 "cmp %[p], %[b]\n\t"
                                 "bne 1b\n"
                                 : [p] "+r"(acc), [y] "+r"(y), [mn] "+r"(mn), [mx] "+r"(mx),
                                   [a] "=&r"(a), [b] "=&r"(b), [c] "=&r"(cc), [d] "=&r"(dd)
                                 : [k] "r"(k), [mult] "r"(mult), [oy] "r"(oy), [sh] "r"(sh)
                                 : "cc", "memory");
#undef CV_MM
            }
        }
        /* two per pass: the loads back to back, half the loop overhead */
        for (; acc + 1 < end; acc += 2, y += 2) {
            const int32_t a = acc[0], b = acc[1];
            mn = a < mn ? a : mn;
            mx = a > mx ? a : mx;
            mn = b < mn ? b : mn;
            mx = b > mx ? b : mx;
            int32_t v = __qadd(cv_smmla(a, mult, ohi) >> sh, yz);
            int32_t u = __qadd(cv_smmla(b, mult, ohi) >> sh, yz);
            v = v < amin ? amin : v;
            u = u < amin ? amin : u;
            v = v > amax ? amax : v;
            u = u > amax ? amax : u;
            y[0] = (uint8_t)v;
            y[1] = (uint8_t)u;
        }
#endif
        for (; acc < end; acc++, y++) {
            const int32_t a = *acc;
            mn = a < mn ? a : mn;
            mx = a > mx ? a : mx;
            *y = cv_out(a, &ch, r, 0, 0, 1);
        }
    } else {
        int32_t co = co0;
        for (; acc < end; acc++, y++, idx++) {
            const int32_t a = *acc;
            mn = a < mn ? a : mn;
            mx = a > mx ? a : mx;
            const cv_ch_t ch = cv_ch(r, co, hi);
            *y = cv_out(a, &ch, r, idx, hi ? 0 : r->stoch, hi);
            if (++co == cout) {
                co = 0;
            }
        }
    }
    mm[0] = mn;
    mm[1] = mx;
}

#ifdef CV_DSP
/* in_c == 1, Kp == 10 (3x3 filters), cout <= CV_NB: per output pixel its patch in five
 * registers X0..X4 (values 2 j, 2 j + 1 in word j; the pad multiplies a weight 0, so any
 * value), then per pair of filters 10 SMLAD on the repacked weights (A_j B_j adjacent), the
 * bias as the accumulators' start; the accumulators of as many pixels as fit CV_NB
 * requantized by cv_rq.  Inside the image a 3x3 patch is read directly, else (the border,
 * other shapes) built by cv_patch1 in slot 0.  At the end the two slots get the last pixel
 * pair's patches as the general loop leaves them. */
static __attribute__((noinline)) void cv_c1k10(cv_t *c, int32_t *stats, int hi)
{
    const fqt_shape_t *s = c->s;
    const int32_t cout = c->cout, W = s->in_w, H = s->in_h, out_w = s->out_w;
    const int32_t npix = s->out_h * out_w, chunk = CV_NB / cout;
    const cv_w32 *P = (const cv_w32 *)(const void *)c->P;
    const uint32_t z2 = ((uint32_t)c->xz & 0xFFFFu) * 0x00010001u;
    const int k33 = s->k_h == 3 && s->k_w == 3;
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    int32_t buf[CV_NB];
    int32_t oh = 0, ow = 0;
    for (int32_t pix = 0; pix < npix;) {
        const int32_t np = npix - pix < chunk ? npix - pix : chunk;
        int32_t *acc = buf;
        for (int32_t i = 0; i < np; i++) {
            const int32_t ih0 = oh * s->stride_h - s->pad_top;
            const int32_t iw0 = ow * s->stride_w - s->pad_left;
            uint32_t X0, X1, X2, X3, X4;
            if (k33 && ih0 >= 0 && ih0 + 3 <= H && iw0 >= 0 && iw0 + 3 <= W) {
                const uint8_t *p = c->x + ih0 * W + iw0;
                X0 = __ssub16(p[0] | (uint32_t)p[1] << 16, z2);
                X1 = __ssub16(p[2] | (uint32_t)p[W] << 16, z2);
                X2 = __ssub16(p[W + 1] | (uint32_t)p[W + 2] << 16, z2);
                X3 = __ssub16(p[2 * W] | (uint32_t)p[2 * W + 1] << 16, z2);
                X4 = __ssub16(p[2 * W + 2], z2);
            } else {
                cv_patch1(c, oh, ow, c->P);
                X0 = P[0];
                X1 = P[2];
                X2 = P[4];
                X3 = P[6];
                X4 = P[8];
            }
            if (++ow == out_w) {
                ow = 0;
                oh++;
            }
            const cv_w32 *pw = (const cv_w32 *)(const void *)c->Wq;
            const int32_t *bias = c->bias;
            int32_t *aend = acc + (cout & ~1);
            for (; acc < aend; acc += 2, pw += 10) {
                int32_t a = 0, b = 0;
                if (bias) {
                    a = bias[0];
                    b = bias[1];
                    bias += 2;
                }
                a = __smlad(cv_ldw(pw, 0), X0, a);
                b = __smlad(cv_ldw(pw, 1), X0, b);
                a = __smlad(cv_ldw(pw, 2), X1, a);
                b = __smlad(cv_ldw(pw, 3), X1, b);
                a = __smlad(cv_ldw(pw, 4), X2, a);
                b = __smlad(cv_ldw(pw, 5), X2, b);
                a = __smlad(cv_ldw(pw, 6), X3, a);
                b = __smlad(cv_ldw(pw, 7), X3, b);
                a = __smlad(cv_ldw(pw, 8), X4, a);
                b = __smlad(cv_ldw(pw, 9), X4, b);
                acc[0] = a;
                acc[1] = b;
            }
            if (cout & 1) { /* the odd last filter, in order */
                int32_t a = bias ? bias[0] : 0;
                a = __smlad(cv_ldw(pw, 0), X0, a);
                a = __smlad(cv_ldw(pw, 1), X1, a);
                a = __smlad(cv_ldw(pw, 2), X2, a);
                a = __smlad(cv_ldw(pw, 3), X3, a);
                a = __smlad(cv_ldw(pw, 4), X4, a);
                *acc++ = a;
            }
        }
        cv_rq(&c->r, buf, np * cout, c->y, pix * cout, 0, cout, mm, hi);
        pix += np;
    }
    /* the scratch as the pixel-pair loop leaves it */
    for (int32_t pix = npix - 2; pix < npix; pix++) {
        if (pix >= 0) {
            const int32_t slot = npix & 1 ? pix == npix - 2 : pix == npix - 1;
            cv_patch1(c, pix / out_w, pix % out_w, c->P + 2 * slot);
        }
    }
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}
#endif

#ifdef CV_NO_SMULL
/* ARMv6-M (no DSP, 8 low registers, MULS 1 cycle, loads 2): per pixel pair the raw bytes
 * packed in words X_k = x0_k | x1_k << 16 (padding: x_zero), in the scratch's first 4 K bytes
 * during the call.  One MULS gives both products of a weight: t = w X = w x0 + (w x1) 2^16,
 * each product < 2^16, so t >> 16 = w x1 exactly; per filter S = sum t, H = sum t >> 16
 * (mod 2^32), then sum w x1 = H and sum w x0 = S - (H << 16) (mod 2^32).  Zero points:
 *   sum (w - wz)(x - xz) = sum w x - xz sum w + K wz xz - wz sum x,
 * the first three terms and the bias per filter once per call (cw), wz sum x per pixel. */

/* Pixel (oh, ow) into the halfwords d[0], d[2], ... (x, padding x_zero); returns sum x. */
static __attribute__((noinline)) int32_t cv_pack0(const cv_t *c, int32_t oh, int32_t ow,
                                                  uint16_t *d)
{
    const fqt_shape_t *s = c->s;
    const int32_t cin = s->in_c, KW = s->k_w, row = KW * cin, xz = c->xz;
    const int32_t W = s->in_w, H = s->in_h;
    const int32_t ih0 = oh * s->stride_h - s->pad_top;
    const int32_t iw0 = ow * s->stride_w - s->pad_left;
    const int32_t a = iw0 < 0 ? (-iw0 < KW ? -iw0 : KW) : 0;
    const int32_t b = W - iw0 < KW ? W - iw0 : KW;
    const int32_t ca = a * cin, cb = (b > a ? b : a) * cin;
    const uint8_t *src = c->x + (ih0 * W + iw0) * cin;
    if (row > 0 && a == 0 && b == KW && ih0 >= 0 && ih0 + s->k_h <= H && s->k_h > 0) {
        /* inside the image: k_h runs of row bytes, the sum of all */
        const int32_t skip = W * cin - row;
        const uint8_t *end = src + s->k_h * W * cin;
        uint32_t sm = 0;
        if ((row & 3) == 0) {
            do {
                const uint8_t *re = src + row;
                do {
                    const uint32_t v0 = src[0], v1 = src[1], v2 = src[2], v3 = src[3];
                    d[0] = (uint16_t)v0;
                    d[2] = (uint16_t)v1;
                    d[4] = (uint16_t)v2;
                    d[6] = (uint16_t)v3;
                    sm += v0 + v1 + v2 + v3;
                    src += 4;
                    d += 8;
                } while (src < re);
                src += skip;
            } while (src < end);
        } else {
            do {
                const uint8_t *re = src + row;
                do {
                    const uint32_t v = *src++;
                    *d = (uint16_t)v;
                    d += 2;
                    sm += v;
                } while (src < re);
                src += skip;
            } while (src < end);
        }
        return (int32_t)sm;
    }
    int32_t sum = 0, npad = 0;
    for (int32_t kh = 0; kh < s->k_h; kh++, src += W * cin, d += 2 * row) {
        const int32_t ih = ih0 + kh;
        int32_t c0 = ca, c1 = cb;
        if (ih < 0 || ih >= H) {
            c0 = c1 = row;
        }
        npad += row - (c1 - c0);
        int32_t j = 0;
        for (; j < c0; j++) {
            d[2 * j] = (uint16_t)xz;
        }
        /* 4 per pass: immediate offsets, a quarter of the loop overhead */
        for (; j + 4 <= c1; j += 4) {
            const uint8_t *q = src + j;
            uint16_t *e = d + 2 * j;
            const uint32_t v0 = q[0], v1 = q[1], v2 = q[2], v3 = q[3];
            e[0] = (uint16_t)v0;
            e[2] = (uint16_t)v1;
            e[4] = (uint16_t)v2;
            e[6] = (uint16_t)v3;
            sum += (int32_t)(v0 + v1 + v2 + v3);
        }
        for (; j < c1; j++) {
            const uint32_t v = src[j];
            sum += (int32_t)v;
            d[2 * j] = (uint16_t)v;
        }
        for (; j < row; j++) {
            d[2 * j] = (uint16_t)xz;
        }
    }
    return sum + npad * xz;
}

/* One ARMv6-M step k = i of cv_m0mac: S_a (r8), H_a (r9), S_b (r10), H_b (r11). */
#define CV_M0K(i)                                                                           \
    "ldr %[X], [%[pp], #" #i " * 4]\n\t"                                                    \
    "ldrb %[w], [%[pa], #" #i "]\n\t"                                                       \
    "movs %[t], %[X]\n\t"                                                                   \
    "muls %[t], %[w], %[t]\n\t"                                                             \
    "add r8, %[t]\n\t"                                                                      \
    "lsrs %[t], %[t], #16\n\t"                                                              \
    "add r9, %[t]\n\t"                                                                      \
    "ldrb %[w], [%[pb], #" #i "]\n\t"                                                       \
    "muls %[X], %[w], %[X]\n\t"                                                             \
    "add r10, %[X]\n\t"                                                                     \
    "lsrs %[X], %[X], #16\n\t"                                                              \
    "add r11, %[X]\n\t"

/* Filters a, b (weight bytes pa, pb) over the K >= 1 packed words pp: first K & 7 single
 * steps (their end pp + 4 (K & 7) from the byte count mod 32), then groups of 8 steps; the
 * four sums in the high registers r8-r11 (ADD Rd, Rm takes any registers), the low ones
 * for pointers, X, the weight and the product; 15 cycles per step (4 MACs). */
static inline __attribute__((always_inline)) void
cv_m0mac(const uint32_t *pp, const uint8_t *pa, const uint8_t *pb, int32_t K, uint32_t r[4])
{
    const uint32_t *e = pp + K;
    uint32_t X, w, t;
    __asm__ volatile(".syntax unified\n\t"
                     "movs %[t], #0\n\t"
                     "mov r8, %[t]\n\t"
                     "mov r9, %[t]\n\t"
                     "mov r10, %[t]\n\t"
                     "mov r11, %[t]\n\t"
                     "movs %[t], %[e]\n\t"
                     "subs %[t], %[t], %[pp]\n\t"
                     "lsls %[t], %[t], #27\n\t"
                     "lsrs %[t], %[t], #27\n\t"
                     "beq 3f\n\t"
                     "adds %[t], %[t], %[pp]\n\t"
                     "mov r12, %[t]\n"
                     "4:\n\t" CV_M0K(0)
                     "adds %[pp], #4\n\t"
                     "adds %[pa], #1\n\t"
                     "adds %[pb], #1\n\t"
                     "cmp %[pp], r12\n\t"
                     "bne 4b\n"
                     "3:\n\t"
                     "cmp %[pp], %[e]\n\t"
                     "beq 2f\n"
                     "1:\n\t" CV_M0K(0) CV_M0K(1) CV_M0K(2) CV_M0K(3)
                     CV_M0K(4) CV_M0K(5) CV_M0K(6) CV_M0K(7)
                     "adds %[pp], #32\n\t"
                     "adds %[pa], #8\n\t"
                     "adds %[pb], #8\n\t"
                     "cmp %[pp], %[e]\n\t"
                     "bne 1b\n"
                     "2:\n\t"
                     "mov %[X], r8\n\t"
                     "mov %[w], r9\n\t"
                     "mov %[t], r10\n\t"
                     "mov %[e], r11\n\t"
                     : [pp] "+l"(pp), [pa] "+l"(pa), [pb] "+l"(pb), [e] "+l"(e), [X] "=&l"(X),
                       [w] "=&l"(w), [t] "=&l"(t)
                     :
                     : "r8", "r9", "r10", "r11", "r12", "cc", "memory");
    r[0] = X;
    r[1] = w;
    r[2] = t;
    r[3] = (uint32_t)e;
}
#undef CV_M0K

#define CV_M0_CHUNK 16

/* The whole call on ARMv6-M (npix >= 2, cout <= CV_NB); the scratch left as the general
 * loop leaves it. */
static __attribute__((noinline)) void cv_m0(cv_t *c, int32_t *stats, int hi)
{
    const fqt_shape_t *s = c->s;
    const int32_t K = c->K, cout = c->cout, xz = c->xz, wz = c->wz;
    const int32_t npix = s->out_h * s->out_w, out_w = s->out_w;
    const uint8_t *w = c->w;
    int16_t *P = c->P;
    uint16_t *Hw = (uint16_t *)(void *)P;
    const uint32_t *X = (const uint32_t *)(const void *)P;
    /* buf: a pixel pair's accumulators of CV_M0_CHUNK filters (small: parts with 8 KB of
       SRAM keep 1 KB for the stack) */
    int32_t cw[CV_NB], buf[2 * CV_M0_CHUNK];
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    const int16_t save = P[2 * K - 1]; /* an odd K's pad of slot 0 */
    for (int32_t co = 0; co < cout; co++) {
        int32_t sw = 0;
        for (int32_t k = 0; k < K; k++) {
            sw += w[co * K + k];
        }
        cw[co] = (c->bias ? c->bias[co] : 0) - xz * sw + K * wz * xz;
    }
    int32_t oh = 0, ow = 0;
    for (int32_t pix = 0; pix < npix; pix += 2) {
        const int32_t two = pix + 1 < npix;
        const int32_t sp0 = wz * cv_pack0(c, oh, ow, Hw);
        if (++ow == out_w) {
            ow = 0;
            oh++;
        }
        int32_t sp1 = 0; /* one pixel: slot 1 stale, its sums unused */
        if (two) {
            sp1 = wz * cv_pack0(c, oh, ow, Hw + 1);
            if (++ow == out_w) {
                ow = 0;
                oh++;
            }
        }
        int32_t co = 0;
        for (int32_t cb = 0; cb < cout; cb = co) {
            const int32_t nb = cout - cb > CV_M0_CHUNK ? CV_M0_CHUNK : cout - cb, ce = cb + nb;
            for (; co < ce; co += 2) {
                const int32_t pair = co + 1 < ce;
                const uint8_t *wa = w + co * K, *wb = pair ? wa + K : wa;
                uint32_t r[4]; /* S_a, H_a, S_b, H_b */
                cv_m0mac(X, wa, wb, K, r);
                buf[co - cb] = (int32_t)(r[0] - (r[1] << 16)) + cw[co] - sp0;
                buf[nb + co - cb] = (int32_t)r[1] + cw[co] - sp1;
                if (pair) {
                    buf[co - cb + 1] = (int32_t)(r[2] - (r[3] << 16)) + cw[co + 1] - sp0;
                    buf[nb + co - cb + 1] = (int32_t)r[3] + cw[co + 1] - sp1;
                }
            }
            co = ce;
            if (nb == cout && two) {
                cv_rq(&c->r, buf, 2 * cout, c->y, pix * cout, 0, cout, mm, hi);
            } else {
                cv_rq(&c->r, buf, nb, c->y, pix * cout + cb, cb, cout, mm, hi);
                if (two) {
                    cv_rq(&c->r, buf + nb, nb, c->y, pix * cout + cout + cb, cb, cout, mm, hi);
                }
            }
        }
    }
    /* the scratch as the general loop leaves it */
    for (int32_t pix = npix - 2; pix < npix; pix++) {
        const int32_t slot = npix & 1 ? pix == npix - 2 : pix == npix - 1;
        if (s->in_c == 1) {
            cv_patch1(c, pix / out_w, pix % out_w, P + 2 * slot);
        } else {
            cv_patch(c, pix / out_w, pix % out_w, P + 2 * slot);
        }
    }
    if (s->in_c == 1) {
        cv_repack1(c); /* the filters, the pads 0 */
    } else if (K & 1) {
        P[2 * K - 1] = save;
    }
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}
#endif

/* cin1: the in_c == 1 path (repacked weights); hi: every channel has t >= 32 and no low
 * offset word (nearest with t > 32, floor), else the general requantization. */
static inline __attribute__((always_inline)) void conv2d_forward(cv_t *c, int32_t *stats,
                                                                 int cin1, int hi)
{
    /* everything in locals: the byte stores to y may alias any memory, the compiler would
     * reload fields of *c after each */
    const fqt_shape_t *s = c->s;
    const int32_t K = c->K, K4 = c->K4, Kp = c->Kp, cout = c->cout;
    const int32_t npix = s->out_h * s->out_w, out_w = s->out_w;
    int16_t *P = c->P;
    const int16_t *Wq = c->Wq;
    const uint8_t *w = c->w;
    const int32_t *bias = c->bias;
    const int32_t wz = cin1 ? 0 : c->wz;
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    int32_t buf[CV_NB];
    if (cin1) {
        cv_repack1(c);
#ifdef CV_DSP
        if (Kp == 10 && cout <= CV_NB) {
            cv_c1k10(c, stats, hi);
            return;
        }
#endif
    }
    int32_t oh = 0, ow = 0;
    int32_t pix = 0;
    for (; pix + 1 < npix; pix += 2) {
        const int32_t sp0 = cin1 ? (cv_patch1(c, oh, ow, P), 0) : cv_patch(c, oh, ow, P) * wz;
        if (++ow == out_w) {
            ow = 0;
            oh++;
        }
        const int32_t sp1 =
            cin1 ? (cv_patch1(c, oh, ow, P + 2), 0) : cv_patch(c, oh, ow, P + 2) * wz;
        if (++ow == out_w) {
            ow = 0;
            oh++;
        }
        /* per chunk of at most CV_NB / 2 filters: buf[0, nb) pixel 0, buf[nb, 2 nb)
         * pixel 1 (for cout <= CV_NB / 2 the order of y) */
        int32_t co = 0;
        for (int32_t cb = 0; cb < cout; cb = co) {
          const int32_t nb = cout - cb > CV_NB / 2 ? CV_NB / 2 : cout - cb, ce = cb + nb;
#ifdef CV_DSP
          if (!cin1 && K == K4 && K4 && co + 1 < ce) {
            const int32_t np = (ce - co) >> 1;
            cv_pairs(w + co * K, K, (const uint32_t *)(const void *)P, bias ? bias + co : 0,
                     sp0, sp1, buf + (co - cb), buf + nb + (co - cb), np);
            co += 2 * np;
          }
#endif
          for (; co + 1 < ce; co += 2) {
            int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0; /* a<filter><pixel> */
            const cv_w32 *pp = (const cv_w32 *)(const void *)P;
            if (cin1) {
                /* per word pair j: A_j B_j (the two filters), X_j Y_j (the two pixels) */
                const cv_w32 *pw = (const cv_w32 *)(const void *)(Wq + co * Kp);
                const cv_w32 *pend = pp + Kp;
                for (; pp < pend; pp += 2, pw += 2) {
                    const uint32_t A = pw[0], B = pw[1], X = pp[0], Y = pp[1];
#ifdef CV_DSP
                    a00 = __smlad(A, X, a00);
                    a01 = __smlad(A, Y, a01);
                    a10 = __smlad(B, X, a10);
                    a11 = __smlad(B, Y, a11);
#else
                    const int32_t A0 = (int16_t)A, A1 = (int32_t)A >> 16;
                    const int32_t B0 = (int16_t)B, B1 = (int32_t)B >> 16;
                    const int32_t X0 = (int16_t)X, X1 = (int32_t)X >> 16;
                    const int32_t Y0 = (int16_t)Y, Y1 = (int32_t)Y >> 16;
                    a00 += A0 * X0 + A1 * X1;
                    a01 += A0 * Y0 + A1 * Y1;
                    a10 += B0 * X0 + B1 * X1;
                    a11 += B0 * Y0 + B1 * Y1;
#endif
                }
            } else {
                const uint8_t *wa = w + co * K, *wb = wa + K;
#ifndef CV_DSP
                const uint8_t *wend = wa + K4;
#endif
                /* per group of 4 values: X0 Y0 (values 0, 2 of both pixels), X1 Y1 (1, 3) */
#ifdef CV_DSP
                if (K4) {
                    cv_mac22(wa, wb, (const uint32_t *)pp, K4 >> 2, &a00, &a01, &a10, &a11);
                }
#else
                for (; wa < wend; wa += 4, wb += 4, pp += 4) {
                    const uint32_t X0 = pp[0], Y0 = pp[1], X1 = pp[2], Y1 = pp[3];
                    int32_t A = wa[0], B = wb[0], X = (int16_t)X0, Y = (int16_t)Y0;
                    a00 += A * X;
                    a01 += A * Y;
                    a10 += B * X;
                    a11 += B * Y;
                    A = wa[2], B = wb[2], X = (int32_t)X0 >> 16, Y = (int32_t)Y0 >> 16;
                    a00 += A * X;
                    a01 += A * Y;
                    a10 += B * X;
                    a11 += B * Y;
                    A = wa[1], B = wb[1], X = (int16_t)X1, Y = (int16_t)Y1;
                    a00 += A * X;
                    a01 += A * Y;
                    a10 += B * X;
                    a11 += B * Y;
                    A = wa[3], B = wb[3], X = (int32_t)X1 >> 16, Y = (int32_t)Y1 >> 16;
                    a00 += A * X;
                    a01 += A * Y;
                    a10 += B * X;
                    a11 += B * Y;
                }
#endif
                for (int32_t k = K4; k < K; k++) {
                    const int32_t A = w[co * K + k], B = w[co * K + K + k];
                    const int32_t X = P[2 * k - (k & 1)], Y = P[2 * k - (k & 1) + 2];
                    a00 += A * X;
                    a01 += A * Y;
                    a10 += B * X;
                    a11 += B * Y;
                }
            }
            const int32_t ba = bias ? bias[co] : 0, bb = bias ? bias[co + 1] : 0;
            a00 += ba - sp0;
            a01 += ba - sp1;
            a10 += bb - sp0;
            a11 += bb - sp1;
            buf[co - cb] = a00;
            buf[co - cb + 1] = a10;
            buf[nb + co - cb] = a01;
            buf[nb + co - cb + 1] = a11;
          }
          if (co < ce) { /* the odd last filter */
            buf[co - cb] = cv_acc(c, co, P, sp0, cin1);
            buf[nb + co - cb] = cv_acc(c, co, P + 2, sp1, cin1);
            co++;
          }
          if (nb == cout) {
            cv_rq(&c->r, buf, 2 * cout, c->y, pix * cout, 0, cout, mm, hi);
          } else {
            cv_rq(&c->r, buf, nb, c->y, pix * cout + cb, cb, cout, mm, hi);
            cv_rq(&c->r, buf + nb, nb, c->y, pix * cout + cout + cb, cb, cout, mm, hi);
          }
        }
    }
    if (pix < npix) { /* the odd pixel, in slot 0 */
        const int32_t sp0 = cin1 ? (cv_patch1(c, oh, ow, P), 0) : cv_patch(c, oh, ow, P) * wz;
        for (int32_t co = 0; co < cout; co++) {
            cv_one(c, co, P, sp0, pix * cout + co, mm, cin1);
        }
    }
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

static __attribute__((noinline)) void conv2d_forward_gen(cv_t *c, int32_t *stats)
{
    conv2d_forward(c, stats, 0, 0);
}

static __attribute__((noinline)) void conv2d_forward_gen_hi(cv_t *c, int32_t *stats)
{
    conv2d_forward(c, stats, 0, 1);
}

static __attribute__((noinline)) void conv2d_forward_c1(cv_t *c, int32_t *stats)
{
    conv2d_forward(c, stats, 1, 0);
}

static __attribute__((noinline)) void conv2d_forward_c1_hi(cv_t *c, int32_t *stats)
{
    conv2d_forward(c, stats, 1, 1);
}

FQT_API void fqt_conv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                                uint8_t *y, const fqt_shape_t *s, const fqt_quant_params_t *q,
                                uint8_t *patch, int32_t *stats)
{
    cv_t c;
    c.x = x;
    c.w = w;
    c.bias = bias;
    c.y = y;
    c.s = s;
    c.K = s->k_h * s->k_w * s->in_c;
    c.Kp = (c.K + 1) & ~1;
    c.K4 = s->in_c == 1 ? 0 : c.K & ~3;
    c.cout = s->out_c;
    c.xz = q->x_zero;
    c.wz = q->w_zero;
#ifdef CV_DSP
    c.quad = (s->in_c & 3) == 0;
#else
    c.quad = 0;
#endif
    c.P = (int16_t *)(void *)patch;
    c.Wq = c.P + 2 * c.Kp;
    cv_q_t *r = &c.r;
    r->mult = q->ch_mult ? q->ch_mult : &q->multiplier;
    r->shift = q->ch_mult ? q->ch_shift : &q->shift;
    r->step = q->ch_mult ? 1 : 0;
    r->nearest = q->rounding == FQT_ROUND_NEAREST;
    r->stoch = q->rounding == FQT_ROUND_STOCHASTIC;
    r->seed = q->seed;
    r->yz = q->y_zero;
    r->amin = q->act_min;
    r->amax = q->act_max;
    /* hi: every channel's R needs only the high word of acc * mult + offset */
    int hi = !r->stoch;
    for (int32_t co = 0; co < (r->step ? c.cout : 1); co++) {
        const int32_t t = 31 - r->shift[co];
        hi = hi && (t > 32 || (t == 32 && !r->nearest));
    }
#ifdef CV_NO_SMULL
    if (c.cout <= CV_NB && s->out_h * s->out_w >= 2) {
        cv_m0(&c, stats, hi);
        return;
    }
#endif
    if (s->in_c == 1) {
        (hi ? conv2d_forward_c1_hi : conv2d_forward_c1)(&c, stats);
    } else {
        (hi ? conv2d_forward_gen_hi : conv2d_forward_gen)(&c, stats);
    }
}
