/* Softmax + cross-entropy: the loss and its error dL/dlogits (see fqt.h). */
#include "common/fqt_internal.h"

FQT_API void fqt_softmax_xent(const uint8_t *logits, uint8_t *err, fqt_loss_t *l)
{
    const int32_t n = l->n;
    int32_t qmax = 0, arg = 0;
    for (int32_t i = 0; i < n; i++) {
        if (logits[i] > qmax || i == 0) {
            qmax = logits[i];
            arg = i;
        }
    }
    const float s = l->logits->scale;
    float sum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        float d = (float)((int32_t)logits[i] - qmax);
        d = d * s;
        sum = sum + fqt_expf(d);
    }
    float lo = 0.0f, hi = 0.0f;
    float p_label = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        float d = (float)((int32_t)logits[i] - qmax);
        d = d * s;
        float p = fqt_expf(d);
        p = p / sum;
        float g = p;
        if (i == l->label) {
            p_label = p;
            g = p - 1.0f;
        }
        if (g < lo) {
            lo = g;
        }
        if (g > hi) {
            hi = g;
        }
        uint32_t noise = l->rounding == FQT_ROUND_STOCHASTIC ? fqt_noise(l->seed, i) : 0u;
        err[i] = (uint8_t)fqt_quant_f(g, l->err->scale, l->err->zero, l->rounding, noise);
    }
    l->err->real_min = lo;
    l->err->real_max = hi;
    l->p_label = p_label;
    float loss = fqt_logf(p_label);
    l->loss = 0.0f - loss;
    l->argmax = arg;
}
