/*
 * fqt.h - the one public header of mcusim's fully quantized training (FQT) kernels.
 *
 * Specification: ../shared/docs/fqt-method.md (Deutel et al., IEEE TCAD 2025).  The numpy
 * twin (mcusim/fqt/twin.py) computes every function below bit for bit; tests check it.
 *
 * Conventions
 *  - Tensors are uint8, asymmetric, one scale s and zero point z per tensor:
 *    real = s * (q - z), q in [0, 255].  Layout is HWC (channels last), batch 1.
 *    Weights: conv2d [Cout][kh][kw][Cin], dwconv2d [C][kh][kw], fc [out][in]: one row per
 *    output structure (filter / neuron), the unit of partial updates and gradient
 *    standardization.
 *  - Biases and accumulators are int32 (bias scale = s_w * s_x, zero point 0).  Trainable
 *    layers keep a float32 master copy of the bias; fqt_layer_refresh derives the int32 one.
 *  - Requantization is integer-only: M = multiplier * 2^(shift - 31), multiplier in
 *    [2^30, 2^31), -31 <= shift <= 30.  Hot loops never touch float, so Cortex-M0+ needs no
 *    soft-float there.  Float32 appears only in per-tensor / per-structure bookkeeping
 *    (range tracking, multipliers, softmax, the weight update), exactly as the method
 *    dequantizes, updates in real arithmetic and requantizes.  Every float expression is
 *    written one IEEE operation at a time (built with -ffp-contract=off), so the twin can
 *    repeat it in numpy float32 and get the same bits.
 *  - Rounding R(.): nearest (half up, the default), floor (the paper's), stochastic.
 *    Stochastic noise is counter based, not a sequential PRNG, so that every code path (and
 *    the vectorized twin) draws the same number for the same element:
 *    noise(i) = fqt_hash32(seed + i * 0x9E3779B9), i = flat index of the output element.
 *  - No libc, no malloc: every buffer is passed in by the caller, who plans memory ahead of
 *    time.  Buffer needs are stated with each function.  No float arguments or returns
 *    (floats travel in structs), so the calling convention is the same soft and hard float.
 *  - Hot inner loops have a generic C path (ARMv6-M, what Cortex-M0+ runs) and a DSP path
 *    (ARMv7E-M UXTB16/SSUB16/SMLAD via ACLE, Cortex-M4/M7) selected at compile time by
 *    __ARM_FEATURE_DSP.  Both paths give bit-identical results (every lane product is exact).
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

/* Rounding modes of R(.) (fqt-method.md, "Quantization"). */
enum fqt_rounding {
    FQT_ROUND_NEAREST = 0,    /* round half up (toward +inf): the default (ours) */
    FQT_ROUND_FLOOR = 1,      /* the paper's choice */
    FQT_ROUND_STOCHASTIC = 2, /* floor(v + u), u uniform in [0, 1) from the element's noise */
};

/* Requantization parameters of one kernel call (11 words).
 * Per-output-channel requantization (frozen layers imported from int8 models, whose weights
 * have one scale per output channel): ch_mult / ch_shift point to out_c int32 values each,
 * M_c = ch_mult[c] * 2^(ch_shift[c] - 31), same ranges as multiplier / shift; they replace
 * multiplier / shift for output channel c.  Both NULL (a zeroed record, the default): one M
 * per tensor.  Only the forward kernels read them: fqt_conv2d_forward (channel = co),
 * fqt_dwconv2d_forward (channel = c) and fqt_fc_forward (channel = o); every other kernel
 * ignores them.  The weights' zero point stays one per tensor (w_zero: symmetric int8
 * per-channel weights map to uint8 with zero point 128 in every channel). */
typedef struct {
    int32_t x_zero;     /* zero point of the input operand (x; or e_out in backward-error) */
    int32_t w_zero;     /* zero point of the weights (backward-weights: of the error e_out) */
    int32_t y_zero;     /* zero point of the output */
    int32_t multiplier; /* Q31 multiplier of M, in [2^30, 2^31) */
    int32_t shift;      /* M = multiplier * 2^(shift - 31) */
    int32_t act_min;    /* lower clamp of the output: y_zero when ReLU is fused, else 0 */
    int32_t act_max;    /* upper clamp: 255 */
    int32_t rounding;   /* enum fqt_rounding */
    uint32_t seed;      /* stochastic rounding: base of the element counter */
    const int32_t *ch_mult;  /* per-output-channel multipliers (NULL: per tensor) */
    const int32_t *ch_shift; /* per-output-channel shifts (NULL iff ch_mult is NULL) */
} fqt_quant_params_t;

/* Geometry of a conv2d / dwconv2d / pooling call (12 words).  Output size is given; the
 * padding at the bottom/right is whatever the output size implies.  Padded input positions
 * hold the real value 0 (the input's zero point).  Pools: k = stride = pool size, pad 0. */
typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c; /* dwconv2d and pools: out_c == in_c */
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
} fqt_shape_t;

/* A tracked tensor range (14 words): the EMA of observed real ranges and the scale and
 * zero point derived from it.  fqt_range_commit folds one observation in. */
enum fqt_range_mode {
    FQT_RANGE_FIXED = 0, /* never updated (network input, frozen layers' outputs) */
    FQT_RANGE_ACC = 1,   /* observed as int32 accumulators acc_min/acc_max times acc_scale */
    FQT_RANGE_REAL = 2,  /* observed directly as reals real_min/real_max (the loss error) */
};
typedef struct {
    float fmin, fmax;         /* EMA-tracked real range */
    float alpha;              /* EMA rate: f <- (1 - alpha) * f + alpha * observed */
    float scale;              /* current s = (fmax - fmin) / 255 */
    int32_t zero;             /* current z = round(-fmin / s) clamped to [0, 255] */
    int32_t relu;             /* 1: a ReLU output, observations are clamped at 0 first */
    int32_t acc_min, acc_max; /* written by the producing kernel (FQT_RANGE_ACC) */
    float acc_scale;          /* real value of one accumulator unit (set by fqt_layer_refresh) */
    float real_min, real_max; /* written by the producing kernel (FQT_RANGE_REAL) */
    int32_t mode;             /* enum fqt_range_mode */
    float derive;             /* fqt_range_derive: scale factor relative to the source */
    float headroom;           /* observations are multiplied by this before they are folded
                                 in (> 0; <= 0 means 1): the logits' range keeps room above
                                 its EMA so that a confident sample's largest logit is not
                                 clipped at the top of the range */
} fqt_range_t;

/* ------------------------------------------------------------------------------------ */
/* Common arithmetic                                                                     */

/* R(M * acc) with M = multiplier * 2^(shift - 31):
 * p = acc * multiplier (int64), t = 31 - shift, then
 *   nearest:    (p + 2^(t-1)) >> t        floor: p >> t
 *   stochastic: (p + n) >> t, n = noise >> (32 - t) if t <= 32 else noise << (t - 32).
 * The zero point and clamp are the caller's. */
FQT_API int32_t fqt_requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t rounding,
                               uint32_t noise);

/* The element noise hash (lowbias32 by C. Wellons): x ^= x >> 16; x *= 0x7feb352d;
 * x ^= x >> 15; x *= 0x846ca68b; x ^= x >> 16. */
FQT_API uint32_t fqt_hash32(uint32_t x);

/* sum_i (a[i] - a_zero) * (b[i] - b_zero) in int32, n >= 0: the forward inner loop. */
FQT_API int32_t fqt_dot_u8(const uint8_t *a, int32_t a_zero, const uint8_t *b, int32_t b_zero,
                           int32_t n);

/* acc[i] += scale * (row[i] - row_zero), i < n: the backward inner loop (error rows and
 * gradient rows are accumulated this way; |scale| <= 255). */
FQT_API void fqt_rowacc_u8(int32_t *acc, const uint8_t *row, int32_t row_zero, int32_t scale,
                           int32_t n);

/* ------------------------------------------------------------------------------------ */
/* Forward.  `stats` (may be NULL) receives {min, max} of the int32 accumulators (bias
 * included) of this call: the pre-requantization values range tracking observes. */

/* Fully connected.  x: in bytes; w: out x in; bias: out int32 (NULL: none); y: out bytes.
 *   acc[o] = sum_i (w[o][i] - w_zero)(x[i] - x_zero) + bias[o]
 *   y[o]   = clamp(R(M acc[o]) + y_zero, act_min, act_max)      noise index: o
 * (M: M_o when q->ch_mult is set; likewise M_co in conv2d and M_c in dwconv2d.)
 * Scratch: none. */
FQT_API void fqt_fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                            uint8_t *y, int32_t in_features, int32_t out_features,
                            const fqt_quant_params_t *q, int32_t *stats);

/* Conv2D (any kernel, stride, padding; 1-D conv is in_h = 1).  x: in_h*in_w*in_c;
 * w: out_c*k_h*k_w*in_c; y: out_h*out_w*out_c.  Per pair of output pixels the input
 * patches are gathered (im2col) into `patch` as int16 x - x_zero (padding 0) and dotted with
 * every filter, 2 filters x 2 pixels at a time; in_c == 1: the weights are first repacked
 * into `patch` as int16 w - w_zero (layout: fqt_conv2d_forward.c).  ARMv6-M: during the
 * call `patch` holds a pixel pair's raw bytes packed two per word instead; at the end it is
 * left as on the other cores.
 * Noise index: (oh*out_w + ow)*out_c + co.  Scratch: patch, 4-byte aligned, 4*Kp bytes,
 * plus 2*Kp*out_c when in_c == 1 (Kp = k_h*k_w*in_c rounded up to even). */
FQT_API void fqt_conv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                                uint8_t *y, const fqt_shape_t *s, const fqt_quant_params_t *q,
                                uint8_t *patch, int32_t *stats);

/* Depthwise Conv2D, depth multiplier 1.  w: C*k_h*k_w.  Noise index as conv2d.
 * Scratch: none (blocks of 4 channels' weights, 2 on cores without DSP, are copied to the
 * stack as int16: at most 64 taps x 4 x 2 bytes; larger kernels read w directly). */
FQT_API void fqt_dwconv2d_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                                  uint8_t *y, const fqt_shape_t *s,
                                  const fqt_quant_params_t *q, int32_t *stats);

/* Max pooling, non-overlapping windows; y has x's scale and zero point. */
FQT_API void fqt_maxpool_forward(const uint8_t *x, uint8_t *y, const fqt_shape_t *s);

/* Average pooling, non-overlapping windows; y has x's scale and zero point:
 *   y = clamp(R(M * sum(x - x_zero)) + x_zero, 0, 255), M = 1 / (k_h*k_w) in q.
 * Noise index as conv2d. */
FQT_API void fqt_avgpool_forward(const uint8_t *x, uint8_t *y, const fqt_shape_t *s,
                                 const fqt_quant_params_t *q);

/* ------------------------------------------------------------------------------------ */
/* Loss: softmax + cross-entropy and its error dL/dlogits = softmax - onehot. */
typedef struct {
    int32_t n;               /* classes */
    int32_t label;           /* true class */
    const fqt_range_t *logits; /* scale/zero of the logits */
    fqt_range_t *err;        /* scale/zero of the error; real_min/real_max are written */
    int32_t rounding;
    uint32_t seed;           /* noise index: class i */
    float p_label;           /* out: softmax probability of the label */
    float loss;              /* out: -ln(p_label) (p clamped at 2^-126); fqt_mse: the MSE */
    int32_t argmax;          /* out: predicted class (first maximum logit) */
    const uint8_t *target;   /* fqt_mse: the n target bytes (softmax: unused, NULL) */
    const fqt_range_t *target_r; /* fqt_mse: scale/zero of the target (softmax: unused) */
} fqt_loss_t;

/* p_i = e_i / sum_j e_j, e_i = fqt_expf(s * (q_i - max q)) (summed in class order);
 * g_i = p_i - [i == label]; err[i] = fqt_quantize_f(g_i, err->scale, err->zero). */
FQT_API void fqt_softmax_xent(const uint8_t *logits, uint8_t *err, fqt_loss_t *l);

/* ------------------------------------------------------------------------------------ */
/* Backward.  Errors are uint8 tensors like activations; "zero error" is the error tensor's
 * zero point.
 * Partial updates: the backward kernels of a weighted layer take the layer's selection
 * `sel` (fqt_select_topk, below) as their last argument and visit only its kept structures
 * sel->kept[0 .. sel->k - 1] (conv2d: output channels, dwconv2d: channels, fc: neurons):
 * every other structure's error counts as zero and is never read, whatever its bytes hold.
 * sel == NULL: every structure (full training); a selection with k == N lists them all
 * (the same results).  With a selection a kernel computes exactly what it computes without
 * one on an error tensor whose pruned structures hold the zero point; its cost grows with
 * k, not with N.  Zero errors of visited structures are skipped (they add nothing).
 * The error requantization (R(M acc) + y_zero, clamped) is fqt_out_u8 per element; the
 * usual case (M < 1/2, nearest or floor, clamp [0, 255]) has a loop of its own, and on
 * ARMv6-M it forms the 64-bit product from 16-bit halves (no __aeabi_lmul per element). */
typedef struct fqt_select fqt_select_t;

/* ReLU derivative, in place: e[i] = er->zero where the layer's own output y[i] <= yr->zero
 * (the ReLU was inactive).  Turns the error at a ReLU output into the error at its
 * pre-activation; run before a layer's own backward kernels (and after its
 * fqt_select_topk, which applies the same mask on the fly).  sel NULL: every element;
 * else only the elements of kept structures (element i belongs to structure
 * i % sel->n_struct; n = n_struct * n_pix), every other byte is left as it is. */
FQT_API void fqt_relu_backward(const uint8_t *y, uint8_t *e, int32_t n,
                               const fqt_range_t *yr, const fqt_range_t *er,
                               const fqt_select_t *sel);

/* FC error to the layer below: e_in[i] = clamp(R(M * sum_o (w[o][i] - w_zero)
 * (e_out[o] - x_zero)) + y_zero, 0, 255), M = s_w s_e_out / s_e_in, q = backward-error
 * params (x_zero = e_out's zero), o over the kept neurons.  Rows with a zero error are
 * skipped.  Scratch: acc, in_features int32.  Noise index: i. */
FQT_API void fqt_fc_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                   int32_t in_features, int32_t out_features,
                                   const fqt_quant_params_t *q, int32_t *acc, int32_t *stats,
                                   const fqt_select_t *sel);

/* FC gradients, accumulated over the mini-batch: gw[o][i] += (e_out[o] - w_zero)
 * (x[i] - x_zero), gb[o] += e_out[o] - w_zero (gb may be NULL) for the kept neurons o;
 * q->w_zero is e_out's zero point.  Rows with a zero error are skipped. */
FQT_API void fqt_fc_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                     int32_t *gb, int32_t in_features, int32_t out_features,
                                     const fqt_quant_params_t *q, const fqt_select_t *sel);

/* Conv2D error to the input (transposed convolution):
 * e_in[ih][iw][ci] = requant(sum over (kh, kw, co) with ih = oh*sh - pad_top + kh, ...
 * of (w[co][kh][kw][ci] - w_zero)(e_out[oh][ow][co] - x_zero)), co over the kept filters.
 * Computed one input row at a time: per output pixel of the output rows that reach it, the
 * kept filters with a non-zero error are listed and their filter rows added to the row's
 * accumulators in blocks of up to 8 taps summed over the list in registers (one filter:
 * added directly), then the row is requantized.  A kept list of at most 3 filters skips
 * the listing: per filter and reaching output row, its non-zero errors are listed and each
 * adds its filter row to the window's accumulators straight.
 * Noise index: flat e_in.  Scratch: acc, in_w*in_c int32 (one input row; it holds the
 * last row's accumulators afterwards). */
FQT_API void fqt_conv2d_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                       const fqt_shape_t *s, const fqt_quant_params_t *q,
                                       int32_t *acc, int32_t *stats, const fqt_select_t *sel);

/* Conv2D gradients: gw[co] += (e_out[p][co] - w_zero) * (patch_p - x_zero) over output
 * pixels p (patch as in the forward, padding contributes 0), gb[co] += e_out - w_zero, for
 * the kept filters co.  Per filter, the pixels with a non-zero error and a window inside
 * the input are listed (a stack chunk) and the list streamed once per block of up to 8
 * taps held in registers (Cin = 1, 3x3: rows 0-1 and row 2 of the window); x_zero is
 * removed once per block (sum e (x - z) = sum e x - z sum e).  Windows reaching into the
 * padding add their inside rows at once.  Scratch: none (patch is not used). */
FQT_API void fqt_conv2d_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                         int32_t *gb, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, uint8_t *patch,
                                         const fqt_select_t *sel);

/* Depthwise error to the input, as conv2d with a diagonal channel map: pruned channels'
 * e_in holds clamp(y_zero, act_min, act_max) (the requantized 0) and their accumulator 0
 * counts in stats.  Scratch: none. */
FQT_API void fqt_dwconv2d_backward_error(const uint8_t *w, const uint8_t *e_out,
                                         uint8_t *e_in, const fqt_shape_t *s,
                                         const fqt_quant_params_t *q, int32_t *stats,
                                         const fqt_select_t *sel);

/* Depthwise gradients, for the kept channels.  Scratch: none. */
FQT_API void fqt_dwconv2d_backward_weights(const uint8_t *x, const uint8_t *e_out,
                                           int32_t *gw, int32_t *gb, const fqt_shape_t *s,
                                           const fqt_quant_params_t *q,
                                           const fqt_select_t *sel);

/* Max pooling error routing: each window's error goes to its first maximal input (x is
 * the pool's forward input), every other position and uncovered borders get er->zero (e_out's range).
 * e_in has e_out's scale and zero point.  2x2 windows have their own loops (DSP cores: 4
 * channels per word when in_c is a multiple of 4). */
FQT_API void fqt_maxpool_backward(const uint8_t *x, const uint8_t *e_out, uint8_t *e_in,
                                  const fqt_shape_t *s, const fqt_range_t *er);

/* Average pooling error: e_in = e_out copied to every window position, uncovered borders
 * get er->zero (e_out's range).  Exact: e_in's scale is e_out's divided by k_h*k_w (fqt_range_derive). */
FQT_API void fqt_avgpool_backward(const uint8_t *e_out, uint8_t *e_in, const fqt_shape_t *s,
                                  const fqt_range_t *er);

/* ------------------------------------------------------------------------------------ */
/* Dynamic partial gradient updates (fqt-method.md).  Structure c's error magnitude is
 * m_c = sum_p |e[p][c] - er->zero| over the n_pix output positions p (e[p][c] =
 * e[p * N + c]), where, when y is set, only positions with y[p][c] > yr->zero count: the
 * ReLU mask, applied on the fly (the layer's fqt_relu_backward runs afterwards and masks
 * the kept structures only).  ε = mean / max_mean, mean = (float)sum_c m_c / (float)(N
 * n_pix) (the layer's mean error magnitude relative to the largest seen; ours), or given
 * (eps_mode 1: the loss-based ε the caller computed).  k = floor(min(lambda_min + ε
 * (lambda_max - lambda_min), 1) * N), at least 1; the k largest m_c are kept (ties: lower
 * index) and listed in kept[0 .. k-1] in ascending order (k == N: 0 .. N-1; the entries
 * from k on are left alone).  The error tensor is only read: the backward kernels take the
 * selection and skip the other structures (see "Backward").  touched (may be NULL):
 * touched[c] = 1 for every kept c (the batch's record of the structures that got a
 * gradient, cleared by fqt_update).  Ranking: a binary heap of the k best, O(N log k).
 * Limits: N <= 65535, n_pix * 255 < 2^31.  Scratch: mag, N uint32 (holds m_c afterwards).
 * 14 words. */
struct fqt_select {
    int32_t n_struct;        /* N: channels (conv) or neurons (fc) */
    int32_t n_pix;           /* output positions per structure (fc: 1) */
    const fqt_range_t *er;   /* the error's range (zero point) */
    float lambda_min, lambda_max;
    int32_t eps_mode;        /* 0: layer error (ours, default); 1: eps given */
    float eps;               /* in (eps_mode 1) / out: the ε used */
    float max_mean;          /* state: largest mean error magnitude seen */
    int32_t k;               /* out: structures kept */
    uint32_t *mag;           /* scratch */
    uint16_t *kept;          /* out: the kept structures, ascending (room for N) */
    const uint8_t *y;        /* the layer's ReLU output: the mask (NULL: none) */
    const fqt_range_t *yr;   /* y's range (its zero point; unused without y) */
    uint8_t *touched;        /* N bytes: set for the kept structures (NULL: none) */
};

FQT_API void fqt_select_topk(const uint8_t *e, fqt_select_t *sel);

/* The loss-based ε (eps_mode 1): the sample's loss relative to the largest loss seen so far.
 * *max_loss = max(*max_loss, loss->loss); sel->eps = loss->loss / *max_loss (0 while
 * *max_loss is 0).  Called after fqt_softmax_xent, once per trainable layer (idempotent
 * on *max_loss within a sample). */
FQT_API void fqt_loss_eps(const fqt_loss_t *loss, float *max_loss, fqt_select_t *sel);

/* ------------------------------------------------------------------------------------ */
/* Range tracking and derived parameters */

/* Scale and zero point of a real range (fmin <= 0 <= fmax enforced; a zero-width range
 * becomes [fmin, fmin + 2^-20]):  s = (fmax - fmin) / 255,
 * z = clamp((int)(-fmin / s + 0.5), 0, 255).  Writes r->scale, r->zero. */
FQT_API void fqt_range_params(fqt_range_t *r);

/* Fold this sample's observation into the EMA range, leaving scale/zero as they are.
 * FQT_RANGE_ACC: lo = acc_min * acc_scale, hi = acc_max * acc_scale; FQT_RANGE_REAL:
 * real_min/real_max; FQT_RANGE_FIXED: nothing.  relu: lo, hi clamped at 0; headroom h > 0:
 * lo = lo * h, hi = hi * h.  fmin = (1 - a) fmin + a lo, fmax likewise.
 * Training folds every sample in with this and derives scale/zero (fqt_range_params) once
 * per mini-batch, before the parameter refresh: every sample of a batch is then quantized
 * with the same scales, so that the int32 gradients accumulated over the batch share one
 * unit (s_e * s_x) and can be summed. */
FQT_API void fqt_range_observe(fqt_range_t *r);

/* fqt_range_observe, then fqt_range_params (the weight range in fqt_update). */
FQT_API void fqt_range_commit(fqt_range_t *r);

/* dst->scale = src->scale * dst->derive, dst->zero = src->zero (avg-pool error). */
FQT_API void fqt_range_derive(fqt_range_t *dst, const fqt_range_t *src);

/* Q31 multiplier and shift of a positive float32 M (exact: its 24-bit mantissa << 7). */
FQT_API void fqt_multiplier(const float *m, int32_t *multiplier, int32_t *shift);

/* The per-layer parameter refresh after ranges or weights changed.  Fills the forward,
 * backward-error and backward-weights requantization params from the tensors' ranges,
 * sets y->acc_scale = s_w s_x and e_in->acc_scale = s_w s_e_out, and re-derives the int32
 * bias from the float master copy: bias_q[o] = (int)round_half_away(bias[o] / (s_w s_x)).
 * The forward clamp: act_min = y_zero with relu, else 0; act_max from clip_hi (below). */
typedef struct {
    const fqt_range_t *x, *w;
    fqt_range_t *y;
    const fqt_range_t *e_out;  /* NULL: no backward */
    fqt_range_t *e_in;         /* NULL: no error propagated below */
    fqt_quant_params_t *fwd, *bwd_err, *bwd_w; /* bwd_* NULL when unused */
    const float *bias;         /* float32 master biases (NULL: none or frozen) */
    int32_t *bias_q;           /* int32 biases the forward kernel reads */
    int32_t n_bias;
    int32_t relu;
    float clip_hi;             /* > 0: the activation is clipped at this real value (ReLU6:
                                  6.0): fwd->act_max = min(255, y_zero + (int)(clip_hi /
                                  s_y + 0.5)), float32 op by op; <= 0: act_max 255 */
} fqt_layer_t;

FQT_API void fqt_layer_refresh(fqt_layer_t *l);

/* ------------------------------------------------------------------------------------ */
/* Weight update: SGD with gradient standardization (fqt-method.md), one trainable layer,
 * in integers per weight (float32 only per structure and per tensor).
 * Per structure j with a non-zero accumulated gradient g (its S entries, int32):
 *   k = max(0, bitlen(max_i |g_i|) - b), b = min(15, 32 - bitlen(S)); h_i = g_i >> k
 *   (arithmetic), so |h_i| <= 2^b and the sums below are exact in 64 bits;
 *   mean = (float)(sum_i g_i) / S; var = ((float)(S sum h_i^2 - (sum h_i)^2) / S) / S,
 *   sd = sqrtf(var) * 2^k (sd of h, scaled back: within 2^k of g's);
 *   mu_j, sigma_j <- a mu_j + (1 - a) mean / sd (a = alpha_norm; the first observation,
 *   sigma_j == 0, is taken as is); step_j = lr / sigma_j (0 when sigma_j == 0 or the
 *   structure got no gradient).
 * The updated weight in units of s_old / 256, V_i (int32):
 *   step_j != 0: c = (step_j / s_old) * 256, a = c * 2^k (float32, in that order);
 *     A, e: a's 24-bit significand's top 15 bits and the shift with A 2^-e <= a (a >= 2^15:
 *     A = 2^15 - 1, e = 0; a < 2^-48: A = 0); B = trunc(mu_j * c), clamped to +-2^29;
 *     V_i = 256 (w_i - z_old) + B - ((h_i * A) >> min(e, 31))
 *   step_j == 0: V_i = 256 (w_i - z_old)   (the weight as it is)
 * i.e. (w_i - z_old) - (g_i - mu_j) * step_j / s_old to 1/256 of a step (r_i / s_old of
 * the float rule r_i = (w_i - z_old) s_old - (g_i - mu_j) step_j).  The weight range's EMA
 * takes lo = min(0, (float)min V * s_old * 2^-8), hi = max(0, (float)max V * s_old * 2^-8)
 * (fqt_range_commit, FQT_RANGE_REAL); then with R = s_old * (1 / s_new) (float32) written
 * as m 2^-f = R / 256 (m: R's significand's top 16 bits, f = 23 - exponent(R); R >= 2^24:
 * m = 2^16 - 1, f = 0; R < 2^-39: m = 0; R NaN or <= 0: every weight 0):
 *   w_i = clamp(((V_i m + U_i) >> f) + z_new, 0, 255)   (64-bit, floor)
 * U_i = 2^(f-1) (nearest), 0 (floor) or (noise(i) >> 8) 2^(f-24) (stochastic: u at 2^-24).
 * touched (N bytes; NULL: every structure is looked at): structure j got a gradient in
 * this batch only if touched[j] != 0 (partial updates: fqt_select_topk marks the kept
 * structures); an untouched structure's gradient row is 0 by construction and is neither
 * read nor written (step_j = 0).  touched is cleared afterwards.
 * The step-0 structures' part of the range comes from a byte scan (V grows with w), and
 * when they hold more than 256 weights and the rounding is not stochastic their new bytes
 * come from a 256-entry table over the old byte, built once in `lut` (the same bytes).
 * With accumulators, V_i is kept in gw_i between the two passes.
 * Biases: per-tensor statistics over the N bias gradients (bias_stats = {mu, sigma}, float
 * sums as mean = (sum (float)gb) / N, sd = sqrt(sum ((float)gb - mean)^2 / N) in index
 * order), b_j -= ((float)gb_j - mu) * (lr / sigma) for structures that got a gradient.
 * gw and gb are zeroed.  Scratch: step, N floats; lut, 256 bytes (room for 256 floats). */
typedef struct {
    uint8_t *w;
    int32_t *gw;
    int32_t *gb;              /* NULL: no bias */
    float *bias;              /* float32 master biases (NULL: no bias) */
    float *mu, *sigma;        /* N each: EMA statistics per structure */
    float *bias_stats;        /* 2: {mu, sigma} of the bias gradients */
    float *step;              /* scratch, N */
    fqt_range_t *wr;          /* weight range (mode REAL, alpha = alpha_w) */
    int32_t n_struct, struct_size;
    float lr, alpha_norm;
    int32_t rounding;
    uint32_t seed;            /* noise index: flat weight index */
    uint8_t *touched;         /* N bytes: the structures that got a gradient (NULL: all) */
    float *lut;               /* scratch, 256 floats (NULL: no table) */
    struct fqt_pairs *pairs;  /* FC layers: the gradient kept as the batch's pairs (below;
                                 gw unused, NULL) instead of int32 accumulators (NULL) */
    int32_t *row;             /* with pairs: scratch, struct_size int32 (left zeroed) */
} fqt_update_t;

FQT_API void fqt_update(fqt_update_t *u);

/* An FC layer's weight gradient kept as the mini-batch's (input, error) pairs instead of
 * out x in int32 accumulators: capacity x (in + out) bytes instead of 4 x out x in (emnist-
 * cnn's fc1, 784 -> 32, batch 8: 6.6 KB instead of 100 KB).  fqt_fc_pairs_store replaces
 * fqt_fc_backward_weights per sample; fqt_update (u->pairs set) forms structure j's gradient
 *   g_j[i] = sum_b (e_b[j] - ze_b) (x_b[i] - zx_b)        (int32, b < count)
 * into u->row whenever it needs it, exactly the integers the accumulators would hold (the
 * batch bound keeps both from overflowing), so both forms train bit-identically; it costs
 * count x in multiply-accumulates per touched structure, three times per update (the
 * statistics, the range, the requantization).  count is reset by fqt_update. */
typedef struct fqt_pairs {
    uint8_t *x;        /* capacity x in_features: each stored sample's input */
    uint8_t *e;        /* capacity x out_features: its error, pruned rows as ze_b */
    int32_t *zeros;    /* capacity x 2: {zx_b, ze_b} */
    int32_t in_features, out_features;
    int32_t count;     /* samples stored since the last update */
    int32_t capacity;  /* the mini-batch size; a sample beyond it is not stored */
} fqt_pairs_t;

/* Store this sample's pair in slot count (then count + 1); zero points from q (q->x_zero of
 * x, q->w_zero of e_out, as fqt_fc_backward_weights); a structure sel prunes (sel NULL: none)
 * is stored as ze; gb[o] += e_out[o] - ze over the kept rows (gb may be NULL). */
FQT_API void fqt_fc_pairs_store(const uint8_t *x, const uint8_t *e_out, fqt_pairs_t *pr,
                                const fqt_quant_params_t *q, int32_t *gb,
                                const fqt_select_t *sel);

/* ------------------------------------------------------------------------------------ */
/* Float helpers (float32, written op by op; the twin repeats them) */

/* q = clamp(floor(v / s + z + u), 0, 255) with u = 0.5 (nearest), 0 (floor) or the
 * noise's top 24 bits / 2^24 (stochastic); evaluated as t = v / s; t = t + (float)z;
 * t = t + u; then truncation of t (t < 0 gives 0, t >= 255 gives 255). */
FQT_API int32_t fqt_quantize_f(const float *v, const float *s, int32_t z, int32_t rounding,
                               uint32_t noise);

/* Test hook: out[i] = clamp(R(M acc[i]) + y_zero, act_min, act_max), noise index i, and
 * stats = {min, max} of acc: the backward kernels' requantization of their accumulators
 * (one rounding-mode and shift decision per call; on ARMv6-M without a 64-bit multiply).
 * R(M acc[i]) + y_zero must fit int32, as in every kernel. */
FQT_API void fqt_requantize_v(const int32_t *acc, uint8_t *out, int32_t n,
                              const fqt_quant_params_t *q, int32_t *stats);

/* Test hook: y[i] = sqrt (op 0), exp (op 1) or ln (op 2) of x[i], the kernels' own
 * float32 implementations (fqt_mathf.c). */
FQT_API void fqt_mathf_v(int32_t op, const float *x, float *y, int32_t n);

/* ------------------------------------------------------------------------------------ */
/* Graphs: residual Add, clipped activations (ReLU6), the MSE loss */

/* Elementwise Add of two uint8 tensors: the residual Add of the forward pass, and the sum
 * of the two error tensors where a tensor forks (its consumers' errors add up).
 * Semantics of TFLite's reference quantized ADD (tensorflow/lite/kernels/internal/
 * reference/add.h, AddElementwise, with the parameters of tensorflow/lite/kernels/add.cc
 * PrepareGeneralSubOp) in our conventions (uint8, real = s (q - z), our R):
 *   a' = (a[i] - a_zero) << left_shift, b' likewise             (left_shift 0..23)
 *   acc = R_nearest(Ma a') + R_nearest(Mb b')                     (int32)
 *   y[i] = clamp(R(My acc) + y_zero, act_min, act_max)            noise index: i
 * Ma, Mb, My as multiplier/shift pairs (fqt_requantize); the two input rescales always
 * round to nearest, the output uses `rounding` (seed: `seed`).  `stats` (may be NULL)
 * receives {min, max} of acc, as the forward kernels' stats (y: FQT_RANGE_ACC).
 * Scratch: none.  14 words. */
#define FQT_ADD_LEFT_SHIFT 20 /* TFLite's for 8-bit inputs: 255 << 20 < 2^28 */
typedef struct {
    int32_t a_zero, b_zero, y_zero; /* zero points of a, b and y */
    int32_t a_mult, a_shift;        /* Ma = a_mult * 2^(a_shift - 31) */
    int32_t b_mult, b_shift;        /* Mb */
    int32_t y_mult, y_shift;        /* My */
    int32_t act_min, act_max;       /* output clamp (ReLU: y_zero; clip: see fqt_add_t) */
    int32_t left_shift;             /* FQT_ADD_LEFT_SHIFT (set by fqt_add_refresh) */
    int32_t rounding;               /* enum fqt_rounding of the output requantization */
    uint32_t seed;                  /* stochastic rounding: base of the element counter */
} fqt_add_params_t;

FQT_API void fqt_add_u8(const uint8_t *a, const uint8_t *b, uint8_t *y, int32_t n,
                        const fqt_add_params_t *p, int32_t *stats);

/* The Add's parameters from the tracked ranges (float32 one op at a time, as
 * fqt_layer_refresh):  s2 = 2 max(s_a, s_b) (sm = s_a > s_b ? s_a : s_b; s2 = sm + sm),
 * Ma = s_a / s2, Mb = s_b / s2 (both <= 1/2), unit = s2 / 2^left_shift (one accumulator
 * unit, written to y->acc_scale), My = unit / s_y; multipliers by fqt_multiplier; zero
 * points from the ranges; left_shift = FQT_ADD_LEFT_SHIFT; act_min = y_zero if relu else
 * 0; act_max = 255, or with clip_hi > 0: t = clip_hi / s_y; t = t + 0.5; act_max = 255 if
 * !(t < 255) else min(255, y_zero + (int)t).  rounding and seed of p are left alone. */
typedef struct {
    const fqt_range_t *a, *b; /* the two inputs' ranges */
    fqt_range_t *y;           /* the output's range (acc_scale is written) */
    fqt_add_params_t *p;      /* out */
    int32_t relu;             /* 1: ReLU fused after the Add */
    float clip_hi;            /* > 0: clip at this real value (ReLU6: 6.0), as fqt_layer_t */
} fqt_add_t;

FQT_API void fqt_add_refresh(fqt_add_t *t);

/* Derivative of a clamped activation (ReLU, ReLU6, and the saturation of uint8), in place:
 * e[i] = er->zero where y[i] <= q->act_min or y[i] >= q->act_max, i.e. the derivative is 1
 * only strictly inside (act_min, act_max) and 0 on both edges: an output sitting exactly
 * on a clamp bound counts as clipped (as fqt_relu_backward's y <= y_zero).  q: the forward
 * params of the layer that produced y (note: with act_max = 255, y = 255 counts as
 * saturated and its error is dropped too).  Scratch: none. */
FQT_API void fqt_clip_backward(const uint8_t *y, uint8_t *e, int32_t n,
                               const fqt_quant_params_t *q, const fqt_range_t *er);

/* Mean squared error (autoencoders, regression) and its error dL/dy.  n = loss->n,
 * y's range = loss->logits, the target's = loss->target_r, err's = loss->err.  Per i, in
 * index order, float32 op by op:
 *   yr = (float)(y[i] - z_y) * s_y;  tr = (float)(target[i] - z_t) * s_t;  d = yr - tr
 *   sum = sum + d * d;  g = (d * 2) / n
 *   err[i] = fqt_quantize_f(g, err->scale, err->zero, rounding, noise(seed, i))
 * loss->loss = sum / n (0 when n <= 0); err->real_min = min(0, min g), real_max =
 * max(0, max g) as fqt_softmax_xent; loss->p_label = 0; loss->argmax = index of the first
 * largest y.  loss->label is unused. */
FQT_API void fqt_mse(const uint8_t *y, uint8_t *err, fqt_loss_t *loss);

/* dst[i] = src[i], i < n: a residual add hands its error to an input that masks its error
 * in place (an activation's mask, partial updates) while the other input still needs it
 * unmasked.  Word copies when both are 4-aligned.  Scratch: none. */
FQT_API void fqt_copy_u8(const uint8_t *src, uint8_t *dst, int32_t n);

#endif /* FQT_H */
