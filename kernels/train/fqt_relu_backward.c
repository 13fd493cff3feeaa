/* ReLU derivative applied to an error tensor in place (see fqt.h). */
#include "fqt.h"

FQT_API void fqt_relu_backward(const uint8_t *y, uint8_t *e, int32_t n,
                               const fqt_range_t *yr, const fqt_range_t *er)
{
    const int32_t y_zero = yr->zero, e_zero = er->zero;
    for (int32_t i = 0; i < n; i++) {
        if ((int32_t)y[i] <= y_zero) {
            e[i] = (uint8_t)e_zero;
        }
    }
}
