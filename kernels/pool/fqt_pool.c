/* Max and average pooling over non-overlapping windows: forward and backward (fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_maxpool_forward(const uint8_t *x, uint8_t *y, const fqt_shape_t *s)
{
    const int32_t C = s->in_c;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            uint8_t *yo = y + (oh * s->out_w + ow) * C;
            for (int32_t c = 0; c < C; c++) {
                int32_t m = 0;
                for (int32_t kh = 0; kh < s->k_h; kh++) {
                    const uint8_t *xr = x + ((oh * s->stride_h + kh) * s->in_w +
                                             ow * s->stride_w) * C + c;
                    for (int32_t kw = 0; kw < s->k_w; kw++) {
                        if (xr[kw * C] > m) {
                            m = xr[kw * C];
                        }
                    }
                }
                yo[c] = (uint8_t)m;
            }
        }
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

static void fill(uint8_t *p, int32_t n, int32_t v)
{
    for (int32_t i = 0; i < n; i++) {
        p[i] = (uint8_t)v;
    }
}

FQT_API void fqt_maxpool_backward(const uint8_t *x, const uint8_t *e_out, uint8_t *e_in,
                                  const fqt_shape_t *s, const fqt_range_t *er)
{
    const int32_t C = s->in_c, e_zero = er->zero;
    fill(e_in, s->in_h * s->in_w * C, e_zero);
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            for (int32_t c = 0; c < C; c++) {
                int32_t best = -1, pos = 0;
                for (int32_t kh = 0; kh < s->k_h; kh++) {
                    for (int32_t kw = 0; kw < s->k_w; kw++) {
                        int32_t p = ((oh * s->stride_h + kh) * s->in_w +
                                     ow * s->stride_w + kw) * C + c;
                        if ((int32_t)x[p] > best) {
                            best = x[p];
                            pos = p;
                        }
                    }
                }
                e_in[pos] = e_out[(oh * s->out_w + ow) * C + c];
            }
        }
    }
}

FQT_API void fqt_avgpool_backward(const uint8_t *e_out, uint8_t *e_in, const fqt_shape_t *s,
                                  const fqt_range_t *er)
{
    const int32_t C = s->in_c, e_zero = er->zero;
    fill(e_in, s->in_h * s->in_w * C, e_zero);
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            const uint8_t *eo = e_out + (oh * s->out_w + ow) * C;
            for (int32_t kh = 0; kh < s->k_h; kh++) {
                for (int32_t kw = 0; kw < s->k_w; kw++) {
                    uint8_t *ei = e_in + ((oh * s->stride_h + kh) * s->in_w +
                                          ow * s->stride_w + kw) * C;
                    for (int32_t c = 0; c < C; c++) {
                        ei[c] = eo[c];
                    }
                }
            }
        }
    }
}
