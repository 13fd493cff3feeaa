/* Max and average pooling over non-overlapping windows: forward and backward (fqt.h). */
#include "common/fqt_internal.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline uint32_t ld4(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4); /* unaligned LDR/STR: allowed on ARMv7-M */
    return v;
}

static inline void st4(uint8_t *p, uint32_t v)
{
    __builtin_memcpy(p, &v, 4);
}

/* Per byte lane max(a, b): USUB8 sets GE where a >= b, SEL takes a there. */
static inline __attribute__((always_inline)) uint32_t max4(uint32_t a, uint32_t b)
{
    (void)__usub8(a, b);
    return __sel(a, b);
}
#endif

/* 2x2 windows (any stride): the output bytes in order, the window's top-left byte walked
 * with pointer steps (C channels, then the step to the next window); rows top (pt) and
 * bottom (pt + row), positions pt and pt + C.  A function of its own: few live values
 * (ARMv6-M keeps them in its 8 low registers).  On DSP cores 4 channels per step while 4
 * remain (USUB8/SEL maxima), the last channels byte by byte. */
static __attribute__((noinline)) void
maxpool2x2_fwd(const uint8_t *x, uint8_t *y, const fqt_shape_t *s)
{
    const int32_t C = s->in_c, row = s->in_w * C, skip = s->stride_w * C - C;
    const int32_t step_h = s->stride_h * row, OW = s->out_w;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const uint8_t *pt = x + oh * step_h;
        for (uint8_t *const yend = y + OW * C; y != yend; pt += skip) {
            uint8_t *const end = y + C;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
            for (; end - y >= 4; y += 4, pt += 4) {
                st4(y, max4(max4(ld4(pt), ld4(pt + C)), max4(ld4(pt + row), ld4(pt + row + C))));
            }
#endif
            for (; y != end; y++, pt++) {
                uint32_t m = pt[0], v = pt[C];
                if (v > m) {
                    m = v;
                }
                v = pt[row];
                if (v > m) {
                    m = v;
                }
                v = pt[row + C];
                if (v > m) {
                    m = v;
                }
                *y = (uint8_t)m;
            }
        }
    }
}

/* Any window: per output byte the window walked with pointer steps. */
static __attribute__((noinline)) void
maxpool_fwd_any(const uint8_t *x, uint8_t *y, const fqt_shape_t *s)
{
    const int32_t C = s->in_c, KH = s->k_h, KW = s->k_w;
    const int32_t row = s->in_w * C, skip = s->stride_w * C - C, step_h = s->stride_h * row;
    const int32_t kspan = KW * C, OW = s->out_w;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const uint8_t *pt = x + oh * step_h;
        for (uint8_t *const yend = y + OW * C; y != yend; pt += skip) {
            for (uint8_t *const end = y + C; y != end; y++, pt++) {
                uint32_t m = 0;
                const uint8_t *r = pt;
                for (int32_t kh = 0; kh < KH; kh++, r += row) {
                    for (const uint8_t *q = r, *const qe = r + kspan; q != qe; q += C) {
                        if ((uint32_t)*q > m) {
                            m = *q;
                        }
                    }
                }
                *y = (uint8_t)m;
            }
        }
    }
}

FQT_API void fqt_maxpool_forward(const uint8_t *x, uint8_t *y, const fqt_shape_t *s)
{
    if (s->k_h == 2 && s->k_w == 2) {
        maxpool2x2_fwd(x, y, s);
    } else {
        maxpool_fwd_any(x, y, s);
    }
}

FQT_API void fqt_avgpool_forward(const uint8_t *x, uint8_t *y, const fqt_shape_t *s,
                                 const fqt_quant_params_t *q)
{
    const int32_t C = s->in_c;
    int32_t idx = 0;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            for (int32_t c = 0; c < C; c++, idx++) {
                int32_t acc = 0;
                for (int32_t kh = 0; kh < s->k_h; kh++) {
                    const uint8_t *xr = x + ((oh * s->stride_h + kh) * s->in_w +
                                             ow * s->stride_w) * C + c;
                    for (int32_t kw = 0; kw < s->k_w; kw++) {
                        acc += (int32_t)xr[kw * C] - q->x_zero;
                    }
                }
                y[idx] = fqt_out_u8(acc, q, idx);
            }
        }
    }
}

/* p[0 .. n-1] = v: bytes up to a word boundary, then words (4 at a time), then bytes. */
static void fill(uint8_t *p, int32_t n, int32_t v)
{
    const uint8_t b = (uint8_t)v;
    const uint32_t v4 = (uint32_t)b * 0x01010101u;
    for (; n > 0 && ((uintptr_t)p & 3u); n--) {
        *p++ = b;
    }
    uint32_t *w = (uint32_t *)(void *)p; /* 4-aligned now */
    for (; n >= 16; n -= 16, w += 4) {
        w[0] = v4;
        w[1] = v4;
        w[2] = v4;
        w[3] = v4;
    }
    for (; n >= 4; n -= 4) {
        *w++ = v4;
    }
    p = (uint8_t *)w;
    for (; n > 0; n--) {
        *p++ = b;
    }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* One 2x2 window of 4 channels (byte lanes), positions a, b (top row: xt, xt + C) and c, d
 * (bottom row: xb, xb + C): a knockout in window order, each comparison a USUB8 whose GE
 * flags (set where the earlier operand is >= the later) steer SEL: the first maximum of
 * (a, b) and of (c, d), then of the two winners (the top one on a tie: it comes first).
 * Each position's output word holds e in the lanes where it is the window's first maximum
 * and z elsewhere; all 4 words are stored (no fill needed under the window). */
static inline __attribute__((always_inline)) void
maxpool2x2_x4(const uint8_t *xt, const uint8_t *xb, uint8_t *et, uint8_t *eb, int32_t C,
              uint32_t e, uint32_t z)
{
    const uint32_t a = ld4(xt), b = ld4(xt + C), c = ld4(xb), d = ld4(xb + C);
    (void)__usub8(a, b);
    const uint32_t mab = __sel(a, b);
    uint32_t oa = __sel(e, z), ob = __sel(z, e);
    (void)__usub8(c, d);
    const uint32_t mcd = __sel(c, d);
    uint32_t oc = __sel(e, z), od = __sel(z, e);
    (void)__usub8(mab, mcd);
    oa = __sel(oa, z);
    ob = __sel(ob, z);
    oc = __sel(z, oc);
    od = __sel(z, od);
    st4(et, oa);
    st4(et + C, ob);
    st4(eb, oc);
    st4(eb + C, od);
}

/* 2x2 windows, 4 channels at a time (C a multiple of 4; C a constant in the common
 * cases 8 and 16: immediate offsets, the channel loop unrolled). */
static inline __attribute__((always_inline)) void
maxpool2x2_c4(const uint8_t *x, const uint8_t *eo, uint8_t *ei, const fqt_shape_t *s,
              uint32_t z4, const int32_t C)
{
    const int32_t row = s->in_w * C, step_w = s->stride_w * C;
    const int32_t step_h = s->stride_h * row, OW = s->out_w;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const uint8_t *xt = x + oh * step_h, *xb = xt + row;
        uint8_t *et = ei + oh * step_h, *eb = et + row;
        for (const uint8_t *const eo_end = eo + OW * C; eo != eo_end;) {
#pragma GCC unroll 4
            for (int32_t c = 0; c < C; c += 4) {
                maxpool2x2_x4(xt + c, xb + c, et + c, eb + c, C, ld4(eo + c), z4);
            }
            eo += C;
            xt += step_w;
            xb += step_w;
            et += step_w;
            eb += step_w;
        }
    }
}
#endif

/* The error is routed to the first maximum of each window in row-major window order (a
 * later position wins only when strictly larger).  Positions are walked with pointer
 * steps (no index products per element); 2x2 windows (the common pool) have loops of
 * their own, which on DSP cores take 4 channels at once when in_c is a multiple of 4.
 * Each loop is a function of its own (fewer live values: no spills on ARMv6-M). */

/* 2x2 windows, one channel at a time: the window's top-left byte walked with pointer steps
 * as in maxpool2x2_fwd, the first maximum's address found in x and its error written at the
 * same offset in e_in (d = e_in - x). */
static __attribute__((noinline)) void
maxpool2x2(const uint8_t *x, const uint8_t *eo, uint8_t *ei, const fqt_shape_t *s)
{
    const int32_t C = s->in_c, row = s->in_w * C, skip = s->stride_w * C - C;
    const int32_t step_h = s->stride_h * row, OW = s->out_w;
    const intptr_t d = (intptr_t)ei - (intptr_t)x;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const uint8_t *pt = x + oh * step_h;
        for (const uint8_t *const eend = eo + OW * C; eo != eend; pt += skip) {
            for (const uint8_t *const end = eo + C; eo != end; eo++, pt++) {
                const uint8_t *w = pt, *const pb = pt + row;
                uint32_t best = *pt, v = pt[C];
                if (v > best) {
                    best = v;
                    w = pt + C;
                }
                v = *pb;
                if (v > best) {
                    best = v;
                    w = pb;
                }
                if ((uint32_t)pb[C] > best) {
                    w = pb + C;
                }
                *(uint8_t *)(uintptr_t)((intptr_t)w + d) = *eo;
            }
        }
    }
}

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* 2x2 windows, 4 channels at a time (C a multiple of 4). */
static __attribute__((noinline)) void
maxpool2x2_dsp(const uint8_t *x, const uint8_t *eo, uint8_t *ei, const fqt_shape_t *s,
               uint32_t z4)
{
    switch (s->in_c) {
    case 8:
        maxpool2x2_c4(x, eo, ei, s, z4, 8);
        break;
    case 16:
        maxpool2x2_c4(x, eo, ei, s, z4, 16);
        break;
    default:
        maxpool2x2_c4(x, eo, ei, s, z4, s->in_c);
    }
}
#endif

/* Any window size. */
static __attribute__((noinline)) void
maxpool_any(const uint8_t *x, const uint8_t *eo, uint8_t *ei, const fqt_shape_t *s)
{
    const int32_t C = s->in_c, KH = s->k_h, KW = s->k_w;
    const int32_t row = s->in_w * C, step_w = s->stride_w * C, step_h = s->stride_h * row;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        const uint8_t *xw = x + oh * step_h;
        uint8_t *ew = ei + oh * step_h;
        for (int32_t ow = 0; ow < s->out_w; ow++, xw += step_w, ew += step_w, eo += C) {
            for (int32_t c = 0; c < C; c++) {
                int32_t best = -1, off = 0;
                const uint8_t *xr = xw + c;
                for (int32_t kh = 0, o = c; kh < KH; kh++, xr += row, o += row) {
                    for (int32_t kw = 0, ok = 0; kw < KW; kw++, ok += C) {
                        if ((int32_t)xr[ok] > best) {
                            best = xr[ok];
                            off = o + ok;
                        }
                    }
                }
                ew[off] = eo[c];
            }
        }
    }
}

FQT_API void fqt_maxpool_backward(const uint8_t *x, const uint8_t *e_out, uint8_t *e_in,
                                  const fqt_shape_t *s, const fqt_range_t *er)
{
    const int32_t n = s->in_h * s->in_w * s->in_c;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    if (s->k_h == 2 && s->k_w == 2 && (s->in_c & 3) == 0) {
        /* the 4-lane loop stores every position of every window: with stride 2 only the
           positions no window covers (bottom rows, right columns) need the fill */
        if (s->stride_h == 2 && s->stride_w == 2) {
            const int32_t row = s->in_w * s->in_c, used = 2 * s->out_w * s->in_c;
            const int32_t rows = 2 * s->out_h;
            if (used < row) {
                for (int32_t r = 0; r < rows; r++) {
                    fill(e_in + r * row + used, row - used, er->zero);
                }
            }
            fill(e_in + rows * row, n - rows * row, er->zero);
        } else {
            fill(e_in, n, er->zero);
        }
        maxpool2x2_dsp(x, e_out, e_in, s, ((uint32_t)er->zero & 0xFFu) * 0x01010101u);
        return;
    }
#endif
    fill(e_in, n, er->zero);
    if (s->k_h != 2 || s->k_w != 2) {
        maxpool_any(x, e_out, e_in, s);
        return;
    }
    maxpool2x2(x, e_out, e_in, s);
}

/* Each window position gets its output's error bytes (C contiguous bytes per position). */
FQT_API void fqt_avgpool_backward(const uint8_t *e_out, uint8_t *e_in, const fqt_shape_t *s,
                                  const fqt_range_t *er)
{
    const int32_t C = s->in_c, KH = s->k_h, KW = s->k_w;
    const int32_t row = s->in_w * C;
    const int32_t step_w = s->stride_w * C, step_h = s->stride_h * row;
    /* the zero point for the positions no window covers (bottom rows, right columns) */
    fill(e_in, s->in_h * row, er->zero);
    const uint8_t *eo = e_out;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        uint8_t *ew = e_in + oh * step_h;
        for (int32_t ow = 0; ow < s->out_w; ow++, ew += step_w, eo += C) {
            uint8_t *er_ = ew;
            for (int32_t kh = 0; kh < KH; kh++, er_ += row) {
                uint8_t *d = er_;
                for (int32_t kw = 0; kw < KW; kw++, d += C) {
                    for (int32_t c = 0; c < C; c++) {
                        d[c] = eo[c];
                    }
                }
            }
        }
    }
}
