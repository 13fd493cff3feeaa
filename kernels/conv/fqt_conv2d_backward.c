/* Conv2D backward pass: error to the input and gradients (see fqt.h). */
#include "conv/fqt_conv_common.h"

/* The visited filters: the selection's kept list (list set, n = k) or every filter (list
 * NULL, n = out_c).  Both kernels are instantiated twice, with and without a list: a
 * single copy, with the list a run-time variable, ran 25-50 % slower (one more live
 * register in the inner loops). */

#define CBW_CHUNK 32

typedef struct {
    const uint8_t *p; /* the window's first byte, x + (ih0*in_w + iw0)*in_c */
    int32_t e;        /* e_out - w_zero, non-zero */
} cbw_ent_t;

/* g[0..7] += sum_i e_i * p_i[off + 0..7] - corr (8 taps of one window row) */
static inline __attribute__((always_inline)) void
cbw_block8(int32_t *g, const cbw_ent_t *ent, int32_t off, int32_t corr)
{
    int32_t a0 = g[0] - corr, a1 = g[1] - corr, a2 = g[2] - corr, a3 = g[3] - corr;
    int32_t a4 = g[4] - corr, a5 = g[5] - corr, a6 = g[6] - corr, a7 = g[7] - corr;
    for (;; ent++) {
        const uint8_t *p = ent->p;
        if (!p) {
            break;
        }
        p += off;
        const int32_t e = ent->e;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
        uint32_t w0, w1;
        __builtin_memcpy(&w0, p, 4);
        __builtin_memcpy(&w1, p + 4, 4);
        const int32_t u0 = (int32_t)__uxtb16(w0), v0 = (int32_t)fqt_uxtb16_ror8(w0);
        const int32_t u1 = (int32_t)__uxtb16(w1), v1 = (int32_t)fqt_uxtb16_ror8(w1);
        a0 = __smlabb(u0, e, a0);
        a1 = __smlabb(v0, e, a1);
        a2 = __smlatb(u0, e, a2);
        a3 = __smlatb(v0, e, a3);
        a4 = __smlabb(u1, e, a4);
        a5 = __smlabb(v1, e, a5);
        a6 = __smlatb(u1, e, a6);
        a7 = __smlatb(v1, e, a7);
#else
        a0 += e * p[0];
        a1 += e * p[1];
        a2 += e * p[2];
        a3 += e * p[3];
        a4 += e * p[4];
        a5 += e * p[5];
        a6 += e * p[6];
        a7 += e * p[7];
#endif
    }
    g[0] = a0;
    g[1] = a1;
    g[2] = a2;
    g[3] = a3;
    g[4] = a4;
    g[5] = a5;
    g[6] = a6;
    g[7] = a7;
}

/* g[0..3] += sum_i e_i * p_i[off + 0..3] - corr */
static inline __attribute__((always_inline)) void
cbw_block4(int32_t *g, const cbw_ent_t *ent, int32_t off, int32_t corr)
{
    int32_t a0 = g[0] - corr, a1 = g[1] - corr, a2 = g[2] - corr, a3 = g[3] - corr;
    for (;; ent++) {
        const uint8_t *p = ent->p;
        if (!p) {
            break;
        }
        p += off;
        const int32_t e = ent->e;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
        uint32_t w0;
        __builtin_memcpy(&w0, p, 4);
        const int32_t u0 = (int32_t)__uxtb16(w0), v0 = (int32_t)fqt_uxtb16_ror8(w0);
        a0 = __smlabb(u0, e, a0);
        a1 = __smlabb(v0, e, a1);
        a2 = __smlatb(u0, e, a2);
        a3 = __smlatb(v0, e, a3);
#else
        a0 += e * p[0];
        a1 += e * p[1];
        a2 += e * p[2];
        a3 += e * p[3];
#endif
    }
    g[0] = a0;
    g[1] = a1;
    g[2] = a2;
    g[3] = a3;
}

/* g[0] += sum_i e_i * p_i[off] - corr */
static inline __attribute__((always_inline)) void
cbw_block1(int32_t *g, const cbw_ent_t *ent, int32_t off, int32_t corr)
{
    int32_t a0 = g[0] - corr;
    for (; ent->p; ent++) {
        a0 += ent->e * ent->p[off];
    }
    g[0] = a0;
}

/* g[j] += sum_i e_i * p_i[off + j] - corr for j < len: blocks of 8, 4 and 1 taps, the
 * list (ended by a null pointer) streamed once per block. */
static __attribute__((noinline)) void
cb_run(int32_t *g, const cbw_ent_t *ent, int32_t off, int32_t len, int32_t corr)
{
    int32_t j = 0;
    for (; j + 8 <= len; j += 8) {
        cbw_block8(g + j, ent, off + j, corr);
    }
    if (j + 4 <= len) {
        cbw_block4(g + j, ent, off + j, corr);
        j += 4;
    }
    for (; j < len; j++) {
        cbw_block1(g + j, ent, off + j, corr);
    }
}

/* Error, one input row ih at a time, into the row's accumulators acc[iw][ci]: the output
 * rows reaching it are oh in [oh_lo, oh_hi] (kh = ih + pad_top - oh*sh in [0, k_h), oh <
 * out_h; both bounds only grow with ih, so they are stepped, not divided).  Per such oh and
 * output pixel ow, the pixel's errors are scanned once and the visited filters with a
 * non-zero one listed (filter row pointer w[co][kh], e; a stack chunk of CBW_CHUNK); the
 * taps kw whose input column lies inside the row are one run of (kw_hi - kw_lo) * in_c
 * values in the filters and in the accumulators, added in blocks of up to 8 with the
 * block's sums over the list in registers: acc += sum_i e_i w_i - w_zero * sum_i e_i
 * (exact modulo 2^32).  Then the row is requantized. */
static __attribute__((noinline)) void
cbe_add(int32_t *acc, cbw_ent_t *ent, int32_t m, int32_t wz, int32_t esum, int32_t iw0,
        const fqt_shape_t *s)
{
    const int32_t cin = s->in_c, KW = s->k_w;
    const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
    const int32_t kw_hi = s->in_w - iw0 < KW ? s->in_w - iw0 : KW;
    if (kw_hi <= kw_lo) {
        return;
    }
    if (m == 1) { /* one filter: its run added at once */
        fqt_rowacc(acc + (iw0 + kw_lo) * cin, ent[0].p + kw_lo * cin, wz, ent[0].e,
                   (kw_hi - kw_lo) * cin);
        return;
    }
    ent[m].p = 0; /* the end mark */
    cb_run(acc + (iw0 + kw_lo) * cin, ent, kw_lo * cin, (kw_hi - kw_lo) * cin, wz * esum);
}

static inline __attribute__((always_inline)) void
conv2d_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                      const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *acc,
                      int32_t *mm, const uint16_t *list, int32_t n)
{
    const int32_t cin = s->in_c, cout = s->out_c, W = s->in_w;
    const int32_t KH = s->k_h, KW = s->k_w, K = KH * KW * cin;
    const int32_t sh = s->stride_h, sw = s->stride_w, OH = s->out_h, OW = s->out_w;
    const int32_t rowlen = W * cin;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    cbw_ent_t ent[CBW_CHUNK + 1];
    fqt_rq_t rq;
    fqt_rq_init(&rq, q);
    /* oh_hi: the last oh with oh*sh <= a (and < OH), oh_lo: the first with oh*sh >= a - KH
     * + 1; th_hi = (oh_hi + 1)*sh and th_lo = oh_lo*sh are the thresholds of their next
     * steps */
    int32_t oh_lo = 0, oh_hi = -1, th_lo = 0, th_hi = 0;
    for (int32_t ih = 0; ih < s->in_h; ih++) {
        const int32_t a = ih + s->pad_top;
        while (oh_hi + 1 < OH && th_hi <= a) {
            oh_hi++;
            th_hi += sh;
        }
        while (th_lo < a - KH + 1) {
            oh_lo++;
            th_lo += sh;
        }
        int32_t c = 0;
        for (; c + 4 <= rowlen; c += 4) {
            acc[c] = 0;
            acc[c + 1] = 0;
            acc[c + 2] = 0;
            acc[c + 3] = 0;
        }
        for (; c < rowlen; c++) {
            acc[c] = 0;
        }
        for (int32_t oh = oh_lo, kh = a - th_lo; oh <= oh_hi; oh++, kh -= sh) {
            const uint8_t *ep = e_out + oh * OW * cout;
            const uint8_t *wkh = w + kh * KW * cin;
            int32_t iw0 = -s->pad_left;
            for (int32_t ow = 0; ow < OW; ow++, ep += cout, iw0 += sw) {
                int32_t m = 0, esum = 0;
                for (int32_t j = 0; j < n; j++) {
                    const int32_t co = list ? list[j] : j;
                    const int32_t e = (int32_t)ep[co] - xz;
                    if (__builtin_expect(e == 0, 1)) {
                        continue;
                    }
                    ent[m].p = wkh + co * K;
                    ent[m].e = e;
                    esum += e;
                    if (++m == CBW_CHUNK) {
                        cbe_add(acc, ent, m, wz, esum, iw0, s);
                        m = 0;
                        esum = 0;
                    }
                }
                if (m) {
                    cbe_add(acc, ent, m, wz, esum, iw0, s);
                }
            }
        }
        fqt_requant_u8(&rq, acc, e_in + ih * rowlen, rowlen, ih * rowlen, mm);
    }
}

static __attribute__((noinline)) void
conv2d_backward_error_all(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                          const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *acc,
                          int32_t *mm)
{
    conv2d_backward_error(w, e_out, e_in, s, q, acc, mm, 0, s->out_c);
}

static __attribute__((noinline)) void
conv2d_backward_error_kept(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                           const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *acc,
                           int32_t *mm, const uint16_t *list, int32_t n)
{
    conv2d_backward_error(w, e_out, e_in, s, q, acc, mm, list, n);
}

#define CBE_FEW 3 /* kept lists this short take conv2d_backward_error_few (below) */

static void conv2d_backward_error_few(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                      const fqt_shape_t *s, const fqt_quant_params_t *q,
                                      int32_t *acc, int32_t *mm, const uint16_t *list,
                                      int32_t n);

FQT_API void fqt_conv2d_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                       const fqt_shape_t *s, const fqt_quant_params_t *q,
                                       int32_t *acc, int32_t *stats, const fqt_select_t *sel)
{
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    if (sel && sel->k <= CBE_FEW) {
        conv2d_backward_error_few(w, e_out, e_in, s, q, acc, mm, sel->kept, sel->k);
    } else if (sel) {
        conv2d_backward_error_kept(w, e_out, e_in, s, q, acc, mm, sel->kept, sel->k);
    } else {
        conv2d_backward_error_all(w, e_out, e_in, s, q, acc, mm);
    }
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

/* Gradients of the visited filters: gw[co][k] += sum_p e_p (patch_p[k] - x_zero), e_p =
 * e_out[p][co] - w_zero, a matrix product over the output pixels p, most of whose errors
 * are zero (ReLU, max-pool backward).  Per filter, its error column is scanned once; every
 * pixel with a non-zero error adds e to the bias sum, and
 *  - if its window lies inside the input, goes into a list (a stack chunk of CBW_CHUNK
 *    entries: window pointer, e).  A full chunk (and the last) is flushed: per block of
 *    up to 8 consecutive taps of one window row (k = kh*k_w*in_c + j), the block's
 *    accumulators stay in registers while the list is streamed, sum_i e_i x_i[k], and
 *    gw[co][k] gets that minus x_zero * sum_i e_i (the zero point removed once per block:
 *    sum e (x - z) = sum e x - z sum e, exact modulo 2^32).  Cin = 1 with a 3x3 window:
 *    all 9 taps in registers, one pass over the list.
 *  - else (the window reaches into the padding) its window's rows inside the input, runs
 *    of (kw_hi - kw_lo) * in_c contiguous bytes in x and in gw[co], are added at once
 *    (padding adds nothing).
 * DSP cores: a word of x gives 4 taps (UXTB16 lanes 0, 2 and, rotated, 1, 3), each
 * multiplied by e with SMLABB / SMLATB (x in [0, 255] and e in [-255, 255] fit 16 bits). */
/* Cin = 1, 3x3: g[kh*3 + kw] += sum_i e_i * p_i[kh*W + kw] - corr, window rows 0 and 1 in
 * one pass over the list (6 accumulators), row 2 in a second (all 9 at once spilled). */
static inline __attribute__((always_inline)) void
cbw_win3x3(int32_t *g, const cbw_ent_t *ent, int32_t W, int32_t corr)
{
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0;
    for (const cbw_ent_t *t = ent;; t++) {
        const uint8_t *p = t->p;
        if (!p) {
            break;
        }
        const int32_t e = t->e;
        a0 += e * p[0];
        a1 += e * p[1];
        a2 += e * p[2];
        p += W;
        a3 += e * p[0];
        a4 += e * p[1];
        a5 += e * p[2];
    }
    g[0] += a0 - corr;
    g[1] += a1 - corr;
    g[2] += a2 - corr;
    g[3] += a3 - corr;
    g[4] += a4 - corr;
    g[5] += a5 - corr;
    W += W;
    a0 = a1 = a2 = 0;
    for (const cbw_ent_t *t = ent;; t++) {
        const uint8_t *p = t->p;
        if (!p) {
            break;
        }
        const int32_t e = t->e;
        p += W;
        a0 += e * p[0];
        a1 += e * p[1];
        a2 += e * p[2];
    }
    g[6] += a0 - corr;
    g[7] += a1 - corr;
    g[8] += a2 - corr;
}

/* The list's contribution to filter g (every tap: the windows lie inside the input). */
static __attribute__((noinline)) void
cbw_flush(int32_t *g, cbw_ent_t *ent, int32_t n, int32_t corr, const fqt_shape_t *s)
{
    ent[n].p = 0; /* the end mark: the loops test the pointer, not a count */
    const int32_t cin = s->in_c, KW = s->k_w, rowb = KW * cin, xrow = s->in_w * cin;
    if (cin == 1 && KW == 3 && s->k_h == 3) {
        cbw_win3x3(g, ent, xrow, corr);
        return;
    }
    for (int32_t kh = 0; kh < s->k_h; kh++, g += rowb) {
        cb_run(g, ent, kh * xrow, rowb, corr);
    }
}

/* A pixel whose window reaches into the padding: its rows inside the input, runs of
 * (kw_hi - kw_lo) * in_c bytes in x and in g, each added at once. */
static __attribute__((noinline)) void
cbw_border(int32_t *g, const uint8_t *x, const fqt_shape_t *s, int32_t xz, int32_t oh,
           int32_t ow, int32_t e)
{
    const int32_t cin = s->in_c, H = s->in_h, W = s->in_w, KH = s->k_h, KW = s->k_w;
    const int32_t ih0 = oh * s->stride_h - s->pad_top;
    const int32_t iw0 = ow * s->stride_w - s->pad_left;
    const int32_t kh_lo = ih0 < 0 ? -ih0 : 0;
    const int32_t kh_hi = H - ih0 < KH ? H - ih0 : KH;
    const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
    const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
    const int32_t run = (kw_hi - kw_lo) * cin;
    if (run <= 0 || kh_hi <= kh_lo) {
        return; /* the window lies in the padding: nothing to add */
    }
    const uint8_t *xr = x + ((ih0 + kh_lo) * W + iw0 + kw_lo) * cin;
    g += (kh_lo * KW + kw_lo) * cin;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    /* short runs (Cin = 1): per tap, e * x summed, x_zero once per run (fqt_rowacc's
     * word loop does not start; ARMv6-M: its byte loop is this) */
    if (run <= 3) {
        const int32_t corr = xz * e;
        for (int32_t kh = kh_lo; kh < kh_hi; kh++, xr += W * cin, g += KW * cin) {
            g[0] += e * xr[0] - corr;
            if (run > 1) {
                g[1] += e * xr[1] - corr;
                if (run > 2) {
                    g[2] += e * xr[2] - corr;
                }
            }
        }
        return;
    }
#endif
    for (int32_t kh = kh_lo; kh < kh_hi; kh++, xr += W * cin, g += KW * cin) {
        fqt_rowacc(g, xr, xz, e, run);
    }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* The first of p, p + st, ... (before pe, a multiple of st on) whose byte is not z, or
 * pe: two bytes loaded per pass, the loop's only taken branch its back edge. */
static inline __attribute__((always_inline)) const uint8_t *
cb_skip(const uint8_t *p, const uint8_t *pe, int32_t st, int32_t z)
{
    const uint8_t *const pe2 = pe - st; /* p < pe2: p and p + st inside */
    while (p < pe2) {
        const int32_t b0 = p[0], b1 = p[st];
        if (__builtin_expect(b0 != z, 0)) {
            return p;
        }
        if (__builtin_expect(b1 != z, 0)) {
            return p + st;
        }
        p += 2 * st;
    }
    if (p != pe && *p == z) {
        p = pe;
    }
    return p;
}
#endif

static inline __attribute__((always_inline)) void
conv2d_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw, int32_t *gb,
                        const fqt_shape_t *s, const fqt_quant_params_t *q,
                        const uint16_t *list, int32_t n)
{
    const int32_t cin = s->in_c, cout = s->out_c, H = s->in_h, W = s->in_w;
    const int32_t KH = s->k_h, KW = s->k_w, K = KH * KW * cin;
    const int32_t OH = s->out_h, OW = s->out_w;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    const int32_t step = s->stride_w * cin;
    /* the interior columns: ow in [ow_lo, ow_lo + ow_n) have iw0 >= 0 and iw0 + KW <= W */
    int32_t ow_lo = 0, ow_n = 0;
    while (ow_lo < OW && ow_lo * s->stride_w - s->pad_left < 0) {
        ow_lo++;
    }
    while (ow_lo + ow_n < OW && (ow_lo + ow_n) * s->stride_w - s->pad_left + KW <= W) {
        ow_n++;
    }
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    /* ceil(65536 / cout): ow = (ow * cout * recip) >> 16 while ow * cout < 65536 */
    const uint32_t recip = OW * cout <= 65536 ? (65535u + (uint32_t)cout) / (uint32_t)cout : 0u;
#endif
    cbw_ent_t ent[CBW_CHUNK + 1];
    for (int32_t j = 0; j < n; j++) {
        const int32_t co = list ? list[j] : j;
        int32_t *g = gw + co * K;
        int32_t bsum = 0, lsum = 0, m = 0;
        const uint8_t *ep = e_out + co;
        for (int32_t oh = 0; oh < OH; oh++) {
            const int32_t ih0 = oh * s->stride_h - s->pad_top;
            /* ow_n of the row's pixels are interior (none if the rows stick out) */
            const uint32_t nin = ih0 >= 0 && ih0 + KH <= H ? (uint32_t)ow_n : 0u;
            /* the first interior window of the row (formed only when there is one) */
            const uint8_t *xb =
                nin ? x + (ih0 * W - s->pad_left + ow_lo * s->stride_w) * cin : x;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
            /* only the byte pointer steps over the zero errors; a hit's ow = d / cout
             * (d = its byte offset in the row, a multiple of cout) as (d * recip) >> 16,
             * exact for d < 65536 (OW * cout <= 65536: else counted) */
            const uint8_t *p = ep, *const pe = ep + OW * cout;
            ep = pe;
            for (int32_t ow = 0;; p += cout) {
                p = cb_skip(p, pe, cout, wz);
                if (p == pe) {
                    break;
                }
                if (__builtin_expect(recip != 0, 1)) {
                    ow = (int32_t)(((uint32_t)(p - (pe - OW * cout)) * recip) >> 16);
                } else {
                    ow = 0;
                    for (const uint8_t *t = pe - OW * cout; t != p; t += cout) {
                        ow++;
                    }
                }
                const int32_t e = (int32_t)*p - wz;
#else
            /* ARMv6-M: a counter and the pointer stepped per pixel (the pointer scan
             * ran slower there) */
            for (int32_t r = OW; r > 0; r--, ep += cout) {
                const int32_t e = (int32_t)*ep - wz;
                if (__builtin_expect(e == 0, 1)) {
                    continue;
                }
                const int32_t ow = OW - r;
#endif
                bsum += e;
                if ((uint32_t)(ow - ow_lo) < nin) {
                    ent[m].p = xb + (ow - ow_lo) * step;
                    ent[m].e = e;
                    lsum += e;
                    if (++m == CBW_CHUNK) {
                        cbw_flush(g, ent, m, xz * lsum, s);
                        m = 0;
                        lsum = 0;
                    }
                } else {
                    cbw_border(g, x, s, xz, oh, ow, e);
                }
            }
        }
        if (m) {
            cbw_flush(g, ent, m, xz * lsum, s);
        }
        if (gb) {
            gb[co] += bsum;
        }
    }
}

static __attribute__((noinline)) void
conv2d_backward_weights_all(const uint8_t *x, const uint8_t *e_out, int32_t *gw, int32_t *gb,
                            const fqt_shape_t *s, const fqt_quant_params_t *q)
{
    conv2d_backward_weights(x, e_out, gw, gb, s, q, 0, s->out_c);
}

static __attribute__((noinline)) void
conv2d_backward_weights_kept(const uint8_t *x, const uint8_t *e_out, int32_t *gw, int32_t *gb,
                             const fqt_shape_t *s, const fqt_quant_params_t *q,
                             const uint16_t *list, int32_t n)
{
    conv2d_backward_weights(x, e_out, gw, gb, s, q, list, n);
}

FQT_API void fqt_conv2d_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                         int32_t *gb, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, uint8_t *patch,
                                         const fqt_select_t *sel)
{
    (void)patch; /* not needed: the windows are read from x */
    if (sel) {
        conv2d_backward_weights_kept(x, e_out, gw, gb, s, q, sel->kept, sel->k);
    } else {
        conv2d_backward_weights_all(x, e_out, gw, gb, s, q);
    }
}

/* Few visited filters (a short kept list, n <= CBE_FEW): the listing over filters per
 * output pixel does not pay.  Per input row and reaching output row oh (filter row kh), each
 * visited filter's error row is scanned and every non-zero error e adds e * (w[co][kh] -
 * w_zero) to the window's accumulators straight (the interior columns ow in [ow_lo, ow_hi)
 * as one run of k_w * in_c taps, the border ones clipped to the row). */

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* 4 taps: a[off/4 + 0..3] += e * (bytes of x - w_zero), x widened by UXTB16 (lanes 0, 2
 * and, rotated, 1, 3), w_zero removed lane-wise (SSUB16), SMLABB / SMLATB per lane; the
 * four loads first (pipelined), then the four stores. */
#define CBE_GROUP(x, off)                                                                  \
    "ldr    %[a0], [%[pa], #" off "]\n\t"                                                  \
    "ldr    %[a1], [%[pa], #" off "+4]\n\t"                                                \
    "ldr    %[a2], [%[pa], #" off "+8]\n\t"                                                \
    "ldr    %[a3], [%[pa], #" off "+12]\n\t"                                               \
    "uxtb16 %[t], %[" x "]\n\t"                                                            \
    "uxtb16 %[" x "], %[" x "], ror #8\n\t"                                                \
    "ssub16 %[t], %[t], %[z]\n\t"                                                          \
    "ssub16 %[" x "], %[" x "], %[z]\n\t"                                                  \
    "smlabb %[a0], %[t], %[e], %[a0]\n\t"                                                  \
    "smlabb %[a1], %[" x "], %[e], %[a1]\n\t"                                              \
    "smlatb %[a2], %[t], %[e], %[a2]\n\t"                                                  \
    "smlatb %[a3], %[" x "], %[e], %[a3]\n\t"                                              \
    "str    %[a0], [%[pa], #" off "]\n\t"                                                  \
    "str    %[a1], [%[pa], #" off "+4]\n\t"                                                \
    "str    %[a2], [%[pa], #" off "+8]\n\t"                                                \
    "str    %[a3], [%[pa], #" off "+12]\n\t"
#endif

/* a[i] += e * (wr[i] - w_zero), i < len (one filter row run, e != 0): fqt_rowacc, with
 * the DSP loop in asm (8 taps per pass: gcc interleaved the loads and stores, a stall
 * each). z2: w_zero in both halfwords. */
static inline __attribute__((always_inline)) void
cbe_scatter(int32_t *a, const uint8_t *wr, int32_t wz, uint32_t z2, int32_t e, int32_t len)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    if (len >= 8) {
        const uint8_t *we = wr + (len & ~7);
        int32_t a0, a1, a2, a3;
        uint32_t x0, x1, t;
        __asm__ volatile("1:\n\t"
                         "ldr    %[x0], [%[pw]], #8\n\t"
                         "ldr    %[x1], [%[pw], #-4]\n\t" CBE_GROUP("x0", "0")
                             CBE_GROUP("x1", "16") "adds   %[pa], %[pa], #32\n\t"
                                                   "cmp    %[pw], %[we]\n\t"
                                                   "bne    1b"
                         : [pa] "+r"(a), [pw] "+r"(wr), [a0] "=&r"(a0), [a1] "=&r"(a1),
                           [a2] "=&r"(a2), [a3] "=&r"(a3), [x0] "=&r"(x0), [x1] "=&r"(x1),
                           [t] "=&r"(t)
                         : [e] "r"(e), [z] "r"(z2), [we] "r"(we)
                         : "cc", "memory");
        len &= 7;
    }
#else
    (void)z2;
#endif
    fqt_rowacc(a, wr, wz, e, len);
}

/* The listed non-zero errors of one output row (ent[i].ow, ent[i].e, i < m) of one filter
 * onto its filter row wr: interior windows (ow in [ow_lo, ow_hi)) add the whole run of
 * k_w * in_c taps, border ones the run clipped to the input row. */
typedef struct {
    int32_t ow, e;
} cbe_ent_t;

static __attribute__((noinline)) void
cbe_list(int32_t *acc, const uint8_t *wr, const cbe_ent_t *ent, int32_t m, int32_t wz,
         int32_t ow_lo, int32_t ow_hi, const fqt_shape_t *s)
{
    const int32_t cin = s->in_c, W = s->in_w, KW = s->k_w, rowb = KW * cin;
    const int32_t sw = s->stride_w, pl = s->pad_left;
    const uint32_t z2 = ((uint32_t)wz & 0xFFFFu) * 0x00010001u;
    for (const cbe_ent_t *t = ent, *te = ent + m; t < te; t++) {
        const int32_t ow = t->ow, e = t->e;
        const int32_t iw0 = ow * sw - pl;
        if ((uint32_t)(ow - ow_lo) < (uint32_t)(ow_hi - ow_lo)) {
            cbe_scatter(acc + iw0 * cin, wr, wz, z2, e, rowb);
        } else {
            const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
            const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
            if (kw_hi > kw_lo) {
                cbe_scatter(acc + (iw0 + kw_lo) * cin, wr + kw_lo * cin, wz, z2, e,
                            (kw_hi - kw_lo) * cin);
            }
        }
    }
}

static __attribute__((noinline)) void
conv2d_backward_error_few(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                          const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *acc,
                          int32_t *mm, const uint16_t *list, int32_t n)
{
    const int32_t cin = s->in_c, cout = s->out_c, W = s->in_w;
    const int32_t KH = s->k_h, KW = s->k_w, K = KH * KW * cin, rowb = KW * cin;
    const int32_t sh = s->stride_h, sw = s->stride_w, OH = s->out_h, OW = s->out_w;
    const int32_t rowlen = W * cin, pl = s->pad_left;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    /* the interior columns: ow in [ow_lo, ow_hi) have iw0 >= 0 and iw0 + KW <= W */
    int32_t ow_lo = 0, ow_hi;
    while (ow_lo < OW && ow_lo * sw - pl < 0) {
        ow_lo++;
    }
    ow_hi = ow_lo;
    while (ow_hi < OW && ow_hi * sw - pl + KW <= W) {
        ow_hi++;
    }
    cbe_ent_t ent[CBW_CHUNK];
    fqt_rq_t rq;
    fqt_rq_init(&rq, q);
    int32_t oh_lo = 0, oh_hi = -1, th_lo = 0, th_hi = 0; /* as conv2d_backward_error */
    for (int32_t ih = 0; ih < s->in_h; ih++) {
        const int32_t a = ih + s->pad_top;
        while (oh_hi + 1 < OH && th_hi <= a) {
            oh_hi++;
            th_hi += sh;
        }
        while (th_lo < a - KH + 1) {
            oh_lo++;
            th_lo += sh;
        }
        int32_t c = 0;
        for (; c + 8 <= rowlen; c += 8) {
            acc[c] = 0;
            acc[c + 1] = 0;
            acc[c + 2] = 0;
            acc[c + 3] = 0;
            acc[c + 4] = 0;
            acc[c + 5] = 0;
            acc[c + 6] = 0;
            acc[c + 7] = 0;
        }
        for (; c < rowlen; c++) {
            acc[c] = 0;
        }
        for (int32_t oh = oh_lo, kh = a - th_lo; oh <= oh_hi; oh++, kh -= sh) {
            for (int32_t j = 0; j < n; j++) {
                const int32_t co = list[j];
                const uint8_t *wr = w + co * K + kh * rowb;
                const uint8_t *p = e_out + oh * OW * cout + co;
                int32_t m = 0;
                for (int32_t ow = 0; ow < OW; ow++, p += cout) {
                    const int32_t e = (int32_t)*p - xz;
                    if (__builtin_expect(e != 0, 0)) {
                        ent[m].ow = ow;
                        ent[m].e = e;
                        if (++m == CBW_CHUNK) {
                            cbe_list(acc, wr, ent, m, wz, ow_lo, ow_hi, s);
                            m = 0;
                        }
                    }
                }
                if (m) {
                    cbe_list(acc, wr, ent, m, wz, ow_lo, ow_hi, s);
                }
            }
        }
        fqt_requant_u8(&rq, acc, e_in + ih * rowlen, rowlen, ih * rowlen, mm);
    }
}
