/* Depthwise Conv2D (depth multiplier 1): forward, error to the input, gradients (fqt.h). */
#include "common/fqt_internal.h"

/* The forward kernel.  Per output pixel the taps inside the input are one rectangle
 * [kh_lo, kh_hi) x [kw_lo, kw_hi) (padding adds nothing: its x - x_zero is 0), found once
 * per pixel, not tested per tap.  The channels go in blocks of DW_BLOCK: each block's
 * weights are first copied to the stack as int16 with w_zero removed, tap-major (the
 * channels of one tap side by side), so that a tap's input bytes (consecutive channels,
 * HWC) and its weights are read as words.  DSP cores: 4 channels per tap with one input
 * word, UXTB16 (channels 0, 2 and, rotated, 1, 3), SSUB16 of x_zero and SMLABB / SMLATT
 * against the weight pairs; other cores: a multiply per channel.  Kernels with more than
 * DW_MAX_TAPS taps, and the channels after the last whole block, take one channel at a
 * time.  Sums are exact int32 (wrapping as the twin's), so the order does not matter. */
#define DW_MAX_TAPS 64
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define DW_BLOCK 4
#else
#define DW_BLOCK 2
#endif

/* The output of channel c at pixel index idx (y + idx*C + c). */
static inline __attribute__((always_inline)) void
dw_out(uint8_t *y, int32_t acc, const int32_t *bias, const fqt_quant_params_t *q,
       int32_t *stats, int32_t idx, int32_t c, int per_channel)
{
    if (bias) {
        acc += bias[c];
    }
    fqt_stats_add(stats, acc);
    y[idx + c] = per_channel ? fqt_out_u8_ch(acc, q, idx + c, c) : fqt_out_u8(acc, q, idx + c);
}

/* A block's requantization prepared once: per channel its multiplier, sh = t - 32 and
 * rounding offset (t = 31 - shift).  hi: every channel has t >= 32 and the rounding is
 * nearest or floor, so R(M acc) is the high word of acc * mult + rnd shifted right by sh
 * (the same integer as fqt_requantize: floor(p / 2^t) = floor(floor(p / 2^32) / 2^sh),
 * and it fits 32 bits); otherwise dw_out. */
typedef struct {
    int64_t rnd[DW_BLOCK];
    int32_t mult[DW_BLOCK], sh[DW_BLOCK];
    int hi;
} dw_rq_t;

static inline __attribute__((always_inline)) void
dw_rq_init(dw_rq_t *r, const fqt_quant_params_t *q, int32_t c0, int per_channel)
{
    r->hi = q->rounding != FQT_ROUND_STOCHASTIC;
    for (int32_t i = 0; i < DW_BLOCK; i++) {
        const int32_t m = per_channel ? q->ch_mult[c0 + i] : q->multiplier;
        const int32_t t = 31 - (per_channel ? q->ch_shift[c0 + i] : q->shift);
        r->mult[i] = m;
        r->sh[i] = t - 32;
        r->rnd[i] = q->rounding == FQT_ROUND_NEAREST && t >= 1 ? (int64_t)1 << (t - 1) : 0;
        r->hi = r->hi && t >= 32;
    }
}

static inline __attribute__((always_inline)) void
dw_out_hi(uint8_t *y, int32_t acc, const int32_t *bias, const fqt_quant_params_t *q,
          int32_t *stats, const dw_rq_t *r, int32_t idx, int32_t c0, int32_t i)
{
    if (bias) {
        acc += bias[c0 + i];
    }
    fqt_stats_add(stats, acc);
    const int64_t p = (int64_t)acc * r->mult[i] + r->rnd[i];
    const int64_t v = (int64_t)((int32_t)(p >> 32) >> r->sh[i]) + q->y_zero;
    y[idx + c0 + i] = (uint8_t)(v < q->act_min ? q->act_min : (v > q->act_max ? q->act_max : v));
}

/* One channel c, every pixel: wq = its KK weights minus w_zero (int16). */
static inline __attribute__((always_inline)) void
dw_channel(const uint8_t *x, const int16_t *wq, const int32_t *bias, uint8_t *y,
           const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats, int32_t c,
           int per_channel)
{
    const int32_t C = s->in_c, H = s->in_h, W = s->in_w, KH = s->k_h, KW = s->k_w;
    const int32_t xz = q->x_zero;
    int32_t idx = 0;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const int32_t ih0 = oh * s->stride_h - s->pad_top;
        const int32_t kh_lo = ih0 < 0 ? -ih0 : 0;
        const int32_t kh_hi = H - ih0 < KH ? H - ih0 : KH;
        for (int32_t ow = 0; ow < s->out_w; ow++, idx += C) {
            const int32_t iw0 = ow * s->stride_w - s->pad_left;
            const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
            const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
            int32_t acc = 0;
            for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                const uint8_t *xr = x + ((ih0 + kh) * W + iw0) * C + c;
                const int16_t *wr = wq + kh * KW;
                for (int32_t kw = kw_lo; kw < kw_hi; kw++) {
                    acc += (int32_t)wr[kw] * ((int32_t)xr[kw * C] - xz);
                }
            }
            dw_out(y, acc, bias, q, stats, idx, c, per_channel);
        }
    }
}

/* Channels c0 .. c0 + DW_BLOCK - 1, every pixel: wb = their weights minus w_zero, tap-major
 * (DSP: per tap the pairs (c0, c0+2), (c0+1, c0+3) as two words; else (c0, c0+1)). */
static inline __attribute__((always_inline)) void
dw_block(const uint8_t *x, const int16_t *wb, const int32_t *bias, uint8_t *y,
         const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats, int32_t c0,
         int per_channel)
{
    const int32_t C = s->in_c, H = s->in_h, W = s->in_w, KH = s->k_h, KW = s->k_w;
    const int32_t xz = q->x_zero;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    const uint32_t z2 = ((uint32_t)xz & 0xFFFFu) * 0x00010001u;
#endif
    dw_rq_t rq;
    dw_rq_init(&rq, q, c0, per_channel);
    int32_t idx = 0;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const int32_t ih0 = oh * s->stride_h - s->pad_top;
        const int32_t kh_lo = ih0 < 0 ? -ih0 : 0;
        const int32_t kh_hi = H - ih0 < KH ? H - ih0 : KH;
        for (int32_t ow = 0; ow < s->out_w; ow++, idx += C) {
            const int32_t iw0 = ow * s->stride_w - s->pad_left;
            const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
            const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
            int32_t a0 = 0, a1 = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
            int32_t a2 = 0, a3 = 0;
#endif
            for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                const uint8_t *xr = x + ((ih0 + kh) * W + iw0 + kw_lo) * C + c0;
                const int16_t *wr = wb + (kh * KW + kw_lo) * DW_BLOCK;
                for (int32_t kw = kw_lo; kw < kw_hi; kw++, xr += C, wr += DW_BLOCK) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
                    uint32_t x4, w02, w13;
                    __builtin_memcpy(&x4, xr, 4);
                    __builtin_memcpy(&w02, wr, 4);
                    __builtin_memcpy(&w13, wr + 2, 4);
                    const int32_t x02 = (int32_t)__ssub16(__uxtb16(x4), z2);
                    const int32_t x13 = (int32_t)__ssub16(__uxtb16((x4 >> 8) | (x4 << 24)), z2);
                    a0 = __smlabb(x02, (int32_t)w02, a0);
                    a2 = __smlatt(x02, (int32_t)w02, a2);
                    a1 = __smlabb(x13, (int32_t)w13, a1);
                    a3 = __smlatt(x13, (int32_t)w13, a3);
#else
                    a0 += (int32_t)wr[0] * ((int32_t)xr[0] - xz);
                    a1 += (int32_t)wr[1] * ((int32_t)xr[1] - xz);
#endif
                }
            }
            if (rq.hi) {
                dw_out_hi(y, a0, bias, q, stats, &rq, idx, c0, 0);
                dw_out_hi(y, a1, bias, q, stats, &rq, idx, c0, 1);
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
                dw_out_hi(y, a2, bias, q, stats, &rq, idx, c0, 2);
                dw_out_hi(y, a3, bias, q, stats, &rq, idx, c0, 3);
#endif
                continue;
            }
            dw_out(y, a0, bias, q, stats, idx, c0, per_channel);
            dw_out(y, a1, bias, q, stats, idx, c0 + 1, per_channel);
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
            dw_out(y, a2, bias, q, stats, idx, c0 + 2, per_channel);
            dw_out(y, a3, bias, q, stats, idx, c0 + 3, per_channel);
#endif
        }
    }
}

static inline __attribute__((always_inline)) void
dwconv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                 const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats,
                 int per_channel)
{
    const int32_t C = s->in_c, KK = s->k_h * s->k_w, wz = q->w_zero;
    int16_t wq[DW_MAX_TAPS * DW_BLOCK];
    fqt_stats_init(stats);
    int32_t c = 0;
    if (KK <= DW_MAX_TAPS) {
        for (; c + DW_BLOCK <= C; c += DW_BLOCK) {
            for (int32_t t = 0; t < KK; t++) {
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
                /* the order UXTB16 leaves the input bytes in: 0, 2, 1, 3 */
                wq[t * 4 + 0] = (int16_t)((int32_t)w[c * KK + t] - wz);
                wq[t * 4 + 1] = (int16_t)((int32_t)w[(c + 2) * KK + t] - wz);
                wq[t * 4 + 2] = (int16_t)((int32_t)w[(c + 1) * KK + t] - wz);
                wq[t * 4 + 3] = (int16_t)((int32_t)w[(c + 3) * KK + t] - wz);
#else
                wq[t * 2 + 0] = (int16_t)((int32_t)w[c * KK + t] - wz);
                wq[t * 2 + 1] = (int16_t)((int32_t)w[(c + 1) * KK + t] - wz);
#endif
            }
            dw_block(x, wq, bias, y, s, q, stats, c, per_channel);
        }
        for (; c < C; c++) {
            for (int32_t t = 0; t < KK; t++) {
                wq[t] = (int16_t)((int32_t)w[c * KK + t] - wz);
            }
            dw_channel(x, wq, bias, y, s, q, stats, c, per_channel);
        }
        return;
    }
    /* many taps: one channel at a time, the weights read from w */
    const int32_t xz = q->x_zero, W = s->in_w, H = s->in_h, KH = s->k_h, KW = s->k_w;
    int32_t idx = 0;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const int32_t ih0 = oh * s->stride_h - s->pad_top;
        const int32_t kh_lo = ih0 < 0 ? -ih0 : 0;
        const int32_t kh_hi = H - ih0 < KH ? H - ih0 : KH;
        for (int32_t ow = 0; ow < s->out_w; ow++, idx += C) {
            const int32_t iw0 = ow * s->stride_w - s->pad_left;
            const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
            const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
            for (c = 0; c < C; c++) {
                int32_t acc = 0;
                for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                    const uint8_t *xr = x + ((ih0 + kh) * W + iw0) * C + c;
                    const uint8_t *wr = w + c * KK + kh * KW;
                    for (int32_t kw = kw_lo; kw < kw_hi; kw++) {
                        acc += ((int32_t)wr[kw] - wz) * ((int32_t)xr[kw * C] - xz);
                    }
                }
                dw_out(y, acc, bias, q, stats, idx, c, per_channel);
            }
        }
    }
}

static __attribute__((noinline)) void
dwconv2d_forward_pt(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                    const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats)
{
    dwconv2d_forward(x, w, bias, y, s, q, stats, 0);
}

static __attribute__((noinline)) void
dwconv2d_forward_ch(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
                    const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *stats)
{
    dwconv2d_forward(x, w, bias, y, s, q, stats, 1);
}

FQT_API void fqt_dwconv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                                  uint8_t *y, const fqt_shape_t *s,
                                  const fqt_quant_params_t *q, int32_t *stats)
{
    if (q->ch_mult) {
        dwconv2d_forward_ch(x, w, bias, y, s, q, stats);
    } else {
        dwconv2d_forward_pt(x, w, bias, y, s, q, stats);
    }
}

/* The visited channels: the selection's kept list (list set, n = k) or every channel (list
 * NULL, n = C).  Error: per input pixel, the
 * output rows and columns whose window covers it ([oh_lo, oh_hi], [ow_lo, ow_hi], bounds
 * that only grow); a pruned channel's accumulator is 0, so its e_in byte is
 * clamp(y_zero, act_min, act_max) (R(0) = 0 in every rounding mode): those are filled
 * first. */
static void
dwconv2d_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                        const fqt_shape_t *s, const fqt_quant_params_t *q, int32_t *mm,
                        const uint16_t *list, int32_t n)
{
    const int32_t C = s->in_c, KH = s->k_h, KW = s->k_w, KK = KH * KW;
    const int32_t sh = s->stride_h, sw = s->stride_w, OH = s->out_h, OW = s->out_w;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    const int32_t total = s->in_h * s->in_w * C;
    if (n < C && total > 0) {
        const uint8_t v0 = (uint8_t)fqt_clamp(q->y_zero, q->act_min, q->act_max);
        for (int32_t i = 0; i < total; i++) {
            e_in[i] = v0;
        }
        mm[0] = mm[0] < 0 ? mm[0] : 0;
        mm[1] = mm[1] > 0 ? mm[1] : 0;
    }
    int32_t mn = mm[0], mx = mm[1];
    int32_t oh_lo = 0, oh_hi = -1;
    uint8_t *ei = e_in;
    for (int32_t ih = 0; ih < s->in_h; ih++) {
        const int32_t a = ih + s->pad_top;
        while ((oh_hi + 1) * sh <= a && oh_hi + 1 < OH) {
            oh_hi++;
        }
        while (oh_lo * sh < a - KH + 1) {
            oh_lo++;
        }
        int32_t ow_lo = 0, ow_hi = -1;
        for (int32_t iw = 0; iw < s->in_w; iw++, ei += C) {
            const int32_t b = iw + s->pad_left;
            while ((ow_hi + 1) * sw <= b && ow_hi + 1 < OW) {
                ow_hi++;
            }
            while (ow_lo * sw < b - KW + 1) {
                ow_lo++;
            }
            const int32_t idx = (int32_t)(ei - e_in);
            for (int32_t j = 0; j < n; j++) {
                const int32_t c = list ? list[j] : j;
                const uint8_t *wc = w + c * KK;
                int32_t acc = 0;
                for (int32_t oh = oh_lo; oh <= oh_hi; oh++) {
                    const int32_t kh = a - oh * sh;
                    const uint8_t *erow = e_out + oh * OW * C + c;
                    for (int32_t ow = ow_lo; ow <= ow_hi; ow++) {
                        const int32_t e = (int32_t)erow[ow * C] - xz;
                        if (e != 0) {
                            acc += e * ((int32_t)wc[kh * KW + b - ow * sw] - wz);
                        }
                    }
                }
                mn = acc < mn ? acc : mn;
                mx = acc > mx ? acc : mx;
                ei[c] = fqt_out_u8(acc, q, idx + c);
            }
        }
    }
    mm[0] = mn;
    mm[1] = mx;
}

FQT_API void fqt_dwconv2d_backward_error(const uint8_t *w, const uint8_t *e_out,
                                         uint8_t *e_in, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, int32_t *stats,
                                         const fqt_select_t *sel)
{
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    dwconv2d_backward_error(w, e_out, e_in, s, q, mm, sel ? sel->kept : 0,
                            sel ? sel->k : s->in_c);
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

/* Gradients: per visited channel and output pixel with a non-zero error, the taps inside
 * the input (kh in [kh_lo, kh_hi), kw in [kw_lo, kw_hi); padding adds nothing). */
FQT_API void fqt_dwconv2d_backward_weights(const uint8_t *x, const uint8_t *e_out,
                                           int32_t *gw, int32_t *gb, const fqt_shape_t *s,
                                           const fqt_quant_params_t *q,
                                           const fqt_select_t *sel)
{
    const int32_t C = s->in_c, H = s->in_h, W = s->in_w, KH = s->k_h, KW = s->k_w;
    const int32_t xz = q->x_zero, wz = q->w_zero;
    const uint16_t *list = sel ? sel->kept : 0;
    const int32_t n = sel ? sel->k : C;
    for (int32_t j = 0; j < n; j++) {
        const int32_t c = list ? list[j] : j;
        int32_t *g = gw + c * KH * KW;
        const uint8_t *eo = e_out + c;
        for (int32_t oh = 0; oh < s->out_h; oh++) {
            const int32_t ih0 = oh * s->stride_h - s->pad_top;
            const int32_t kh_lo = ih0 < 0 ? -ih0 : 0;
            const int32_t kh_hi = H - ih0 < KH ? H - ih0 : KH;
            for (int32_t ow = 0; ow < s->out_w; ow++, eo += C) {
                const int32_t e = (int32_t)*eo - wz;
                if (e == 0) {
                    continue;
                }
                if (gb) {
                    gb[c] += e;
                }
                const int32_t iw0 = ow * s->stride_w - s->pad_left;
                const int32_t kw_lo = iw0 < 0 ? -iw0 : 0;
                const int32_t kw_hi = W - iw0 < KW ? W - iw0 : KW;
                for (int32_t kh = kh_lo; kh < kh_hi; kh++) {
                    const uint8_t *xr = x + ((ih0 + kh) * W + iw0) * C + c;
                    for (int32_t kw = kw_lo; kw < kw_hi; kw++) {
                        g[kh * KW + kw] += e * ((int32_t)xr[kw * C] - xz);
                    }
                }
            }
        }
    }
}
