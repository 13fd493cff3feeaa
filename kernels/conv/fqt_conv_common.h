/* Patch gathering shared by the conv2d kernels (not public). */
#ifndef FQT_CONV_COMMON_H
#define FQT_CONV_COMMON_H

#include "common/fqt_internal.h"

/* im2col of one output pixel: patch[(kh*k_w + kw)*in_c + ci] = x[ih][iw][ci], or `pad`
 * where (ih, iw) falls into the padding. */
static inline void fqt_gather_patch(const uint8_t *x, const fqt_shape_t *s, int32_t oh,
                                    int32_t ow, uint8_t pad, uint8_t *patch)
{
    const int32_t cin = s->in_c;
    for (int32_t kh = 0; kh < s->k_h; kh++) {
        const int32_t ih = oh * s->stride_h - s->pad_top + kh;
        for (int32_t kw = 0; kw < s->k_w; kw++) {
            const int32_t iw = ow * s->stride_w - s->pad_left + kw;
            uint8_t *dst = patch + (kh * s->k_w + kw) * cin;
            if (ih < 0 || ih >= s->in_h || iw < 0 || iw >= s->in_w) {
                for (int32_t c = 0; c < cin; c++) {
                    dst[c] = pad;
                }
            } else {
                const uint8_t *src = x + (ih * s->in_w + iw) * cin;
                for (int32_t c = 0; c < cin; c++) {
                    dst[c] = src[c];
                }
            }
        }
    }
}

#endif
