/* ReLU derivative applied to an error tensor in place (see fqt.h). */
#include "common/fqt_internal.h"

/* One structure's column (stride N, P positions): 4 positions per iteration, their loads
 * issued together (pipelined), a conditional store each. */
static __attribute__((noinline)) void column(const uint8_t *yp, uint8_t *ep, int32_t N,
                                             int32_t P, int32_t y_zero, int32_t e_zero)
{
    const uint8_t ez = (uint8_t)e_zero;
    const int32_t N2 = 2 * N, N3 = 3 * N, N4 = 4 * N;
    for (; P >= 4; P -= 4, yp += N4, ep += N4) {
        const int32_t y0 = yp[0], y1 = yp[N], y2 = yp[N2], y3 = yp[N3];
        if (y0 <= y_zero) {
            ep[0] = ez;
        }
        if (y1 <= y_zero) {
            ep[N] = ez;
        }
        if (y2 <= y_zero) {
            ep[N2] = ez;
        }
        if (y3 <= y_zero) {
            ep[N3] = ez;
        }
    }
    for (; P > 0; P--, yp += N, ep += N) {
        if ((int32_t)*yp <= y_zero) {
            *ep = ez;
        }
    }
}

FQT_API void fqt_relu_backward(const uint8_t *y, uint8_t *e, int32_t n,
                               const fqt_range_t *yr, const fqt_range_t *er,
                               const fqt_select_t *sel)
{
    const int32_t y_zero = yr->zero, e_zero = er->zero;
    if (sel && sel->k < sel->n_struct) {
        /* the kept structures' elements only: structure c of position p is element
         * p*N + c; per kept structure its column is walked with stride N */
        const int32_t N = sel->n_struct, k = sel->k, P = n / N;
        for (int32_t j = 0; j < k; j++) {
            column(y + sel->kept[j], e + sel->kept[j], N, P, y_zero, e_zero);
        }
        return;
    }
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    /* 4 bytes at a time: USUB8 of y_zero and y sets GE where y <= y_zero, SEL takes the
     * error's zero point there */
    const uint32_t yz4 = ((uint32_t)y_zero & 0xFFu) * 0x01010101u;
    const uint32_t ez4 = ((uint32_t)e_zero & 0xFFu) * 0x01010101u;
    for (; i + 4 <= n; i += 4) {
        uint32_t y4, e4;
        __builtin_memcpy(&y4, y + i, 4);
        __builtin_memcpy(&e4, e + i, 4);
        (void)__usub8(yz4, y4);
        e4 = __sel(ez4, e4);
        __builtin_memcpy(e + i, &e4, 4);
    }
#endif
    for (; i < n; i++) {
        if ((int32_t)y[i] <= y_zero) {
            e[i] = (uint8_t)e_zero;
        }
    }
}
