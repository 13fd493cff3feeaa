/* Derivative of a clamped activation (ReLU6, ReLU, uint8 saturation) applied to an error
 * tensor in place (see fqt.h): 0 unless act_min < y < act_max. */
#include "fqt.h"

FQT_API void fqt_clip_backward(const uint8_t *y, uint8_t *e, int32_t n,
                               const fqt_quant_params_t *q, const fqt_range_t *er)
{
    const int32_t lo = q->act_min, hi = q->act_max, e_zero = er->zero;
    for (int32_t i = 0; i < n; i++) {
        const int32_t v = (int32_t)y[i];
        if (v <= lo || v >= hi) {
            e[i] = (uint8_t)e_zero;
        }
    }
}
