/* Conv2D backward pass: error to the input and gradients (see fqt.h). */
#include "conv/fqt_conv_common.h"

/* The visited filters: the selection's kept list (list set, n = k) or every filter (list
 * NULL, n = out_c).  Both kernels are instantiated twice, with and without a list: a
 * single copy, with the list a run-time variable, ran 25-50 % slower (one more live
 * register in the inner loops). */

/* Error, one input row ih at a time, scattered into the row's accumulators acc[iw][ci]:
 * the output rows reaching it are oh in [oh_lo, oh_hi] (kh = ih + pad_top - oh*sh in
 * [0, k_h), oh < out_h; both bounds only grow with ih, so they are stepped, not divided).
 * Per visited filter co and such oh, the error row e_out[oh][.][co] is scanned; a non-zero
 * error adds e * (w[co][kh][kw][.] - w_zero) for the taps kw whose input column lies inside
 * the row: they are one run of (kw_hi - kw_lo) * in_c contiguous values in the filter and
 * in the accumulators.  Then the row is requantized. */
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
            const uint8_t *erow = e_out + oh * OW * cout;
            for (int32_t j = 0; j < n; j++) {
                const int32_t co = list ? list[j] : j;
                const uint8_t *wk = w + co * K + kh * KW * cin;
                const uint8_t *ep = erow + co;
                int32_t iw0 = -s->pad_left;
                for (int32_t ow = 0; ow < OW; ow++, ep += cout, iw0 += sw) {
                    const int32_t e = (int32_t)*ep - xz;
                    if (e == 0) {
                        continue;
                    }
                    const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
                    const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
                    if (kw_hi > kw_lo) {
                        fqt_rowacc(acc + (iw0 + kw_lo) * cin, wk + kw_lo * cin, wz, e,
                                   (kw_hi - kw_lo) * cin);
                    }
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

FQT_API void fqt_conv2d_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                       const fqt_shape_t *s, const fqt_quant_params_t *q,
                                       int32_t *acc, int32_t *stats, const fqt_select_t *sel)
{
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    if (sel) {
        conv2d_backward_error_kept(w, e_out, e_in, s, q, acc, mm, sel->kept, sel->k);
    } else {
        conv2d_backward_error_all(w, e_out, e_in, s, q, acc, mm);
    }
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

/* Gradients of the visited filters.  Few filters (fewer than 4, or no patch scratch): per
 * filter, its error column is scanned and each output pixel with a non-zero error adds its
 * window's rows straight from x: the taps inside the input (kh in [kh_lo, kh_hi), kw in
 * [kw_lo, kw_hi)) are runs of (kw_hi - kw_lo) * in_c contiguous bytes in x and in the
 * filter's gradient (padding adds nothing).  Many filters: per output pixel, the window is
 * gathered once into the patch (padding = x_zero, adding 0) and accumulated into every
 * filter with a non-zero error as one row. */
static inline __attribute__((always_inline)) void
conv2d_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw, int32_t *gb,
                        const fqt_shape_t *s, const fqt_quant_params_t *q, uint8_t *patch,
                        const uint16_t *list, int32_t n)
{
    const int32_t cin = s->in_c, cout = s->out_c, H = s->in_h, W = s->in_w;
    const int32_t KH = s->k_h, KW = s->k_w, K = KH * KW * cin;
    const int32_t OH = s->out_h, OW = s->out_w;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    if (patch && n >= 4) {
        const uint8_t *eo = e_out;
        for (int32_t oh = 0; oh < OH; oh++) {
            const int32_t ih0 = oh * s->stride_h - s->pad_top;
            const int inside_h = (ih0 < 0 ? -ih0 : 0) < (H - ih0 < KH ? H - ih0 : KH);
            for (int32_t ow = 0; ow < OW; ow++, eo += cout) {
                const int32_t iw0 = ow * s->stride_w - s->pad_left;
                const int inside = inside_h &&
                                   (iw0 < 0 ? -iw0 : 0) < (W - iw0 < KW ? W - iw0 : KW);
                int gathered = 0;
                for (int32_t j = 0; j < n; j++) {
                    const int32_t co = list ? list[j] : j;
                    const int32_t e = (int32_t)eo[co] - wz;
                    if (e == 0) {
                        continue;
                    }
                    if (gb) {
                        gb[co] += e;
                    }
                    if (!inside) {
                        continue; /* the window lies in the padding: nothing to add */
                    }
                    if (!gathered) {
                        fqt_gather_patch(x, s, oh, ow, (uint8_t)xz, patch);
                        gathered = 1;
                    }
                    fqt_rowacc(gw + co * K, patch, xz, e, K);
                }
            }
        }
        return;
    }
    for (int32_t j = 0; j < n; j++) {
        const int32_t co = list ? list[j] : j;
        int32_t *g = gw + co * K;
        int32_t bsum = 0;
        const uint8_t *ep = e_out + co;
        for (int32_t oh = 0; oh < OH; oh++) {
            const int32_t ih0 = oh * s->stride_h - s->pad_top;
            const int32_t kh_lo = ih0 < 0 ? -ih0 : 0;
            const int32_t kh_hi = H - ih0 < KH ? H - ih0 : KH;
            for (int32_t ow = 0; ow < OW; ow++, ep += cout) {
                const int32_t e = (int32_t)*ep - wz;
                if (e == 0) {
                    continue;
                }
                bsum += e;
                const int32_t iw0 = ow * s->stride_w - s->pad_left;
                const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
                const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
                const int32_t run = (kw_hi - kw_lo) * cin;
                if (run <= 0) {
                    continue;
                }
                const uint8_t *xr = x + ((ih0 + kh_lo) * W + iw0 + kw_lo) * cin;
                int32_t *gr = g + (kh_lo * KW + kw_lo) * cin;
                for (int32_t kh = kh_lo; kh < kh_hi; kh++, xr += W * cin, gr += KW * cin) {
                    fqt_rowacc(gr, xr, xz, e, run);
                }
            }
        }
        if (gb) {
            gb[co] += bsum;
        }
    }
}

static __attribute__((noinline)) void
conv2d_backward_weights_all(const uint8_t *x, const uint8_t *e_out, int32_t *gw, int32_t *gb,
                            const fqt_shape_t *s, const fqt_quant_params_t *q, uint8_t *patch)
{
    conv2d_backward_weights(x, e_out, gw, gb, s, q, patch, 0, s->out_c);
}

static __attribute__((noinline)) void
conv2d_backward_weights_kept(const uint8_t *x, const uint8_t *e_out, int32_t *gw, int32_t *gb,
                             const fqt_shape_t *s, const fqt_quant_params_t *q, uint8_t *patch,
                             const uint16_t *list, int32_t n)
{
    conv2d_backward_weights(x, e_out, gw, gb, s, q, patch, list, n);
}

FQT_API void fqt_conv2d_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                         int32_t *gb, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, uint8_t *patch,
                                         const fqt_select_t *sel)
{
    if (sel) {
        conv2d_backward_weights_kept(x, e_out, gw, gb, s, q, patch, sel->kept, sel->k);
    } else {
        conv2d_backward_weights_all(x, e_out, gw, gb, s, q, patch);
    }
}
