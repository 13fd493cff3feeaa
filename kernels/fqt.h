/*
 * fqt.h - the one public header of mcusim's fully quantized training (FQT) kernels.
 *
 * Conventions (see ../shared/docs/fqt-method.md, the specification):
 *  - Tensors are uint8, asymmetric, one scale s and zero point z per tensor:
 *    real = s * (q - z), q in [0, 255].
 *  - Biases and accumulators are int32 (bias scale = s_w * s_x, zero point 0).
 *  - Requantization is integer-only: a real multiplier M = s_w * s_x / s_y is given as a
 *    Q31 fixed-point `multiplier` in [2^30, 2^31) and a power-of-two `shift` with
 *    M = multiplier * 2^(shift - 31), -31 <= shift <= 30.  The host computes both
 *    (mcusim.fqt.quant.quantize_multiplier); the kernels never touch float.
 *  - No libc, no malloc: every buffer is passed in by the caller, who plans memory ahead
 *    of time.  Buffer needs are stated with each function.
 *  - Every function has a generic C path (ARMv6-M, what Cortex-M0+ runs) and, where it
 *    pays, a DSP path (ARMv7E-M SMLAD/UXTB16, Cortex-M4/M7) selected at compile time by
 *    __ARM_FEATURE_DSP.  Both paths give bit-identical results.
 *
 * Every public function is FQT_API: kept in the image (clang: `retain` survives
 * --gc-sections; gcc links without it), so the emulator can call it by name.
 */
#ifndef FQT_H
#define FQT_H

#include <stdint.h>

#if defined(__clang__)
#define FQT_API __attribute__((used, retain))
#else
#define FQT_API __attribute__((used)) /* gcc: images are linked without --gc-sections */
#endif

/* Rounding modes of the requantization step R(.) (fqt-method.md, "Quantization"). */
enum fqt_rounding {
    FQT_ROUND_NEAREST = 0, /* round half up (toward +inf): the default */
    FQT_ROUND_FLOOR = 1,   /* the paper's choice */
};

/* Quantization parameters of one layer's forward pass. */
typedef struct {
    int32_t x_zero;     /* zero point of the input tensor x */
    int32_t w_zero;     /* zero point of the weight tensor w */
    int32_t y_zero;     /* zero point of the output tensor y */
    int32_t multiplier; /* Q31 multiplier of M = s_w * s_x / s_y, in [2^30, 2^31) */
    int32_t shift;      /* M = multiplier * 2^(shift - 31), -31 <= shift <= 30 */
    int32_t act_min;    /* lower clamp of y: y_zero when ReLU is fused, else 0 */
    int32_t act_max;    /* upper clamp of y: 255 */
    int32_t rounding;   /* enum fqt_rounding */
} fqt_quant_params_t;

/*
 * y = R(M * acc) + y_zero clamped to [act_min, act_max], acc = int32 accumulator.
 * R rounds (acc * multiplier) / 2^(31 - shift) with the given rounding mode.
 */
FQT_API int32_t fqt_requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t rounding);

/*
 * Fully connected forward, uint8 in/out:
 *   acc[o] = sum_i (w[o*in + i] - w_zero) * (x[i] - x_zero) + bias[o]
 *   y[o]   = clamp(R(M * acc[o]) + y_zero, act_min, act_max)
 * x: in_features bytes; w: out_features*in_features bytes, row-major (one row per output
 * structure); bias: out_features int32 (may be NULL); y: out_features bytes.
 * Scratch: none.  Stack: a small fixed frame.
 */
FQT_API void fqt_fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                            uint8_t *y, int32_t in_features, int32_t out_features,
                            const fqt_quant_params_t *q);

/*
 * Dot product of two uint8 vectors with zero points, the inner loop of every forward and
 * backward kernel: sum_i (a[i] - a_zero) * (b[i] - b_zero), int32, n >= 0.
 */
FQT_API int32_t fqt_dot_u8(const uint8_t *a, int32_t a_zero, const uint8_t *b, int32_t b_zero,
                           int32_t n);

#endif /* FQT_H */
