/* Conv2D backward pass: error to the input and gradients (see fqt.h). */
#include "conv/fqt_conv_common.h"

FQT_API void fqt_conv2d_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                       const fqt_shape_t *s, const fqt_quant_params_t *q,
                                       int32_t *acc, int32_t *stats)
{
    const int32_t cin = s->in_c, cout = s->out_c;
    const int32_t K = s->k_h * s->k_w * cin;
    fqt_stats_init(stats);
    int32_t idx = 0;
    for (int32_t ih = 0; ih < s->in_h; ih++) {
        for (int32_t iw = 0; iw < s->in_w; iw++) {
            for (int32_t c = 0; c < cin; c++) {
                acc[c] = 0;
            }
            /* every output pixel whose window covers (ih, iw) */
            for (int32_t kh = 0; kh < s->k_h; kh++) {
                const int32_t th = ih + s->pad_top - kh;
                if (th < 0 || th % s->stride_h) {
                    continue;
                }
                const int32_t oh = th / s->stride_h;
                if (oh >= s->out_h) {
                    continue;
                }
                for (int32_t kw = 0; kw < s->k_w; kw++) {
                    const int32_t tw = iw + s->pad_left - kw;
                    if (tw < 0 || tw % s->stride_w) {
                        continue;
                    }
                    const int32_t ow = tw / s->stride_w;
                    if (ow >= s->out_w) {
                        continue;
                    }
                    const uint8_t *eo = e_out + (oh * s->out_w + ow) * cout;
                    const uint8_t *wk = w + (kh * s->k_w + kw) * cin;
                    for (int32_t co = 0; co < cout; co++) {
                        int32_t e = (int32_t)eo[co] - q->x_zero;
                        if (e != 0) {
                            fqt_rowacc_u8(acc, wk + co * K, q->w_zero, e, cin);
                        }
                    }
                }
            }
            for (int32_t c = 0; c < cin; c++, idx++) {
                fqt_stats_add(stats, acc[c]);
                e_in[idx] = fqt_out_u8(acc[c], q, idx);
            }
        }
    }
}

FQT_API void fqt_conv2d_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                         int32_t *gb, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, uint8_t *patch)
{
    const int32_t K = s->k_h * s->k_w * s->in_c;
    const int32_t cout = s->out_c;
    for (int32_t oh = 0; oh < s->out_h; oh++) {
        for (int32_t ow = 0; ow < s->out_w; ow++) {
            const uint8_t *eo = e_out + (oh * s->out_w + ow) * cout;
            int32_t any = 0;
            for (int32_t co = 0; co < cout; co++) {
                any |= (int32_t)eo[co] - q->w_zero;
            }
            if (!any) {
                continue; /* no error at this pixel: skip the gather too */
            }
            fqt_gather_patch(x, s, oh, ow, (uint8_t)q->x_zero, patch);
            for (int32_t co = 0; co < cout; co++) {
                int32_t e = (int32_t)eo[co] - q->w_zero;
                if (e == 0) {
                    continue;
                }
                fqt_rowacc_u8(gw + co * K, patch, q->x_zero, e, K);
                if (gb) {
                    gb[co] += e;
                }
            }
        }
    }
}
