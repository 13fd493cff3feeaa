/* Mean squared error loss and its error dL/dy = 2 (y - t) / n (see fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_mse(const uint8_t *y, uint8_t *err, fqt_loss_t *loss)
{
    const int32_t n = loss->n;
    const float sy = loss->logits->scale, st = loss->target_r->scale;
    const int32_t zy = loss->logits->zero, zt = loss->target_r->zero;
    const float es = loss->err->scale;
    const int32_t ez = loss->err->zero;
    const uint8_t *target = loss->target;
    const float nf = (float)n;
    float sum = 0.0f, lo = 0.0f, hi = 0.0f;
    int32_t qmax = 0, arg = 0;
    for (int32_t i = 0; i < n; i++) {
        if (y[i] > qmax || i == 0) {
            qmax = y[i];
            arg = i;
        }
        float yr = (float)((int32_t)y[i] - zy);
        yr = yr * sy;
        float tr = (float)((int32_t)target[i] - zt);
        tr = tr * st;
        float d = yr - tr;
        float sq = d * d;
        sum = sum + sq;
        float g = d * 2.0f;
        g = g / nf;
        if (g < lo) {
            lo = g;
        }
        if (g > hi) {
            hi = g;
        }
        uint32_t noise = loss->rounding == FQT_ROUND_STOCHASTIC ? fqt_noise(loss->seed, i) : 0u;
        err[i] = (uint8_t)fqt_quant_f(g, es, ez, loss->rounding, noise);
    }
    loss->err->real_min = lo;
    loss->err->real_max = hi;
    loss->p_label = 0.0f;
    loss->loss = n > 0 ? sum / nf : 0.0f;
    loss->argmax = arg;
}
