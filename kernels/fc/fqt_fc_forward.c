/* Fully connected forward pass (see fqt.h). */
#include "fc/fqt_fc_common.h"

/* Zero-point algebra: with x'[i] = x[i] - x_zero,
 *   sum_i (w[o][i] - w_zero) x'[i] = sum_i w[o][i] x'[i] - w_zero * sum_i x'[i]
 * (exact modulo 2^32), so x' is formed once per input word and shared by several rows,
 * the raw weights are multiplied without a per-row correction, and sum x' is one pass per
 * call.  DSP path: 4 rows at a time; per 4 inputs x' is widened into two signed 16-bit
 * pairs (UXTB16, SSUB16: bytes 0, 2 and 1, 3) and each row's word is widened the same way
 * (UXTB16, no subtraction) and multiplied by two SMLADs.  Generic path (M0+): 4 rows at a
 * time as well, one x' per input for all four. */

/* sum_i (x[i] - x_zero), i < n. */
static inline __attribute__((always_inline)) int32_t
fc_sum_x(const uint8_t *x, int32_t x_zero, int32_t n)
{
    uint32_t s = 0;
    int32_t i = 0;
#ifdef FQT_FC_DSP
    for (; i + 4 <= n; i += 4) {
        s = __usada8(fc_ld32(x + i), 0, s);
    }
#endif
    for (; i < n; i++) {
        s += x[i];
    }
    return (int32_t)(s - (uint32_t)n * (uint32_t)x_zero);
}

#ifdef FQT_FC_DSP
/* One step of fc_dot4: 4 inputs of 4 rows.  The word of x is widened to x' = x - x_zero in
 * two signed 16-bit pairs (bytes 0, 2 and 1, 3) by UXTAB16 from (-x_zero, -x_zero) (the
 * lane sums modulo 2^16 are the exact int16 values), each row's word to two unsigned pairs, and
 * two SMLADs per row add w[i] x'[i] for the 4 inputs.  Rows 1, 3 are read at wa + n,
 * wb + n before rows 0, 2 at wa, wb (post-incremented).  Inline assembly: the loop needs 13
 * registers (4 accumulators, 4 pointers, n, c and 4 temporaries; z2 is read from c[1] once
 * per step, pipelined after x, and the loop bound c[0] once per 8 inputs: clang gives
 * inline assembly at most 13 registers) and gcc 12 and clang both spilled 2 to 4 values in the
 * C version (about 40 instead of 30 cycles per step on the M4); gcc also emits UXTB16 Rd,
 * Rm, ROR #8 as two instructions. */
#define FC_STEP                                                                           \
    "ldr    %[x02], [%[x]], #4\n\t"                                                        \
    "ldr    %[t], [%[c], #4]\n\t"                                                            \
    "ldr    %[v], [%[wa], %[n]]\n\t"                                                       \
    "uxtab16 %[x13], %[t], %[x02], ror #8\n\t"                                            \
    "uxtab16 %[x02], %[t], %[x02]\n\t"                                                    \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a1], %[v], %[x02], %[a1]\n\t"                                                \
    "smlad  %[a1], %[t], %[x13], %[a1]\n\t"                                                \
    "ldr    %[v], [%[wa]], #4\n\t"                                                         \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a0], %[v], %[x02], %[a0]\n\t"                                                \
    "smlad  %[a0], %[t], %[x13], %[a0]\n\t"                                                \
    "ldr    %[v], [%[wb], %[n]]\n\t"                                                       \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a3], %[v], %[x02], %[a3]\n\t"                                                \
    "smlad  %[a3], %[t], %[x13], %[a3]\n\t"                                                \
    "ldr    %[v], [%[wb]], #4\n\t"                                                         \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a2], %[v], %[x02], %[a2]\n\t"                                                \
    "smlad  %[a2], %[t], %[x13], %[a2]\n\t"

#define FC_STEP_OPERANDS                                                                  \
    [x] "+r"(x), [wa] "+r"(wa), [wb] "+r"(wb), [a0] "+r"(a0), [a1] "+r"(a1),              \
        [a2] "+r"(a2), [a3] "+r"(a3), [x02] "=&r"(x02), [x13] "=&r"(x13), [v] "=&r"(v),   \
        [t] "=&r"(t)                                                                      \
    : [n] "r"(n), [c] "r"(c)

/* r[k] = sum_i w[k n + i] x'[i], k < 4 (raw weights). */
static inline __attribute__((always_inline)) void
fc_dot4(const uint8_t *x, const uint8_t *w, int32_t n, int32_t x_zero, int32_t *r)
{
    const uint32_t z2 = ((uint32_t)-x_zero & 0xFFFFu) * 0x00010001u; /* -x_zero twice */
    const uint8_t *wa = w, *wb = w + 2 * n; /* rows 0, 1 at wa, wa + n; 2, 3 at wb, wb + n */
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t x02, x13, v, t;
    const uint8_t *xe = x + (n & ~15);
    const uint32_t c[2] = {(uint32_t)xe, z2}; /* read by the loop: the bound, -x_zero x2 */
    if (x != xe) { /* 16 inputs per iteration */
        __asm__ volatile("1:\n\t" FC_STEP FC_STEP FC_STEP FC_STEP "ldr    %[t], [%[c]]\n\t"
                         "cmp    %[x], %[t]\n\t"
                         "bne    1b"
                         : FC_STEP_OPERANDS
                         : "cc", "memory");
    }
    for (int32_t k = (n >> 2) & 3; k > 0; k--) {
        __asm__ volatile(FC_STEP : FC_STEP_OPERANDS : "memory");
    }
    const uint8_t *w0 = wa, *w1 = wa + n, *w2 = wb, *w3 = wb + n;
    for (int32_t k = 0; k < (n & 3); k++) {
        const int32_t xv = (int32_t)x[k] - x_zero;
        a0 += (int32_t)w0[k] * xv;
        a1 += (int32_t)w1[k] * xv;
        a2 += (int32_t)w2[k] * xv;
        a3 += (int32_t)w3[k] * xv;
    }
    r[0] = a0;
    r[1] = a1;
    r[2] = a2;
    r[3] = a3;
}

/* sum_i w[i] x'[i] (raw weights), one row. */
static inline __attribute__((always_inline)) int32_t
fc_dot1(const uint8_t *x, const uint8_t *w, int32_t n, int32_t x_zero)
{
    const uint32_t z2 = ((uint32_t)-x_zero & 0xFFFFu) * 0x00010001u;
    int32_t a = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const uint32_t xw = fc_ld32(x + i), v = fc_ld32(w + i);
        a = __smlad(__uxtb16(v), (int32_t)__uxtab16(z2, xw), a);
        a = __smlad(fc_uxtb16_r8(v), (int32_t)__uxtab16(z2, (xw >> 8) | (xw << 24)), a);
    }
    for (; i < n; i++) {
        a += (int32_t)w[i] * ((int32_t)x[i] - x_zero);
    }
    return a;
}
#define FC_ROWS 4
#else
/* One input (offset k) of 4 rows: x' = x[k] - x_zero, then per row LDRB, MULS, ADD into a
 * high-register accumulator. */
#define FC_M0_IN(k)                                                                       \
    "ldrb   %[xv], [%[x], #" k "]\n\t"                                                     \
    "subs   %[xv], %[xv], %[z]\n\t"                                                        \
    "ldrb   %[t], [%[w0], #" k "]\n\t"                                                     \
    "muls   %[t], %[xv]\n\t"                                                               \
    "add    %[a0], %[t]\n\t"                                                               \
    "ldrb   %[t], [%[w1], #" k "]\n\t"                                                     \
    "muls   %[t], %[xv]\n\t"                                                               \
    "add    %[a1], %[t]\n\t"                                                               \
    "ldrb   %[t], [%[w2], #" k "]\n\t"                                                     \
    "muls   %[t], %[xv]\n\t"                                                               \
    "add    %[a2], %[t]\n\t"                                                               \
    "ldrb   %[t], [%[w3], #" k "]\n\t"                                                     \
    "muls   %[t], %[xv]\n\t"                                                               \
    "add    %[a3], %[t]\n\t"

/* r[k] = sum_i w[k n + i] x'[i], k < 4 (raw weights): one x' per input for 4 rows, 4 inputs
 * per iteration.  Inline assembly (gcc; clang, which reserves r7 and finds no allocation,
 * takes the C loop): the loop needs all 8 low registers (pointers, x_zero, x', the
 * product) and 5 high ones (accumulators, bound); gcc 12 spilled the row pointers
 * (8 instead of about 5.3 cycles per MAC). */
/* gcc assembles Thumb-1 inline assembly in divided syntax */
#define FC_UNIFIED ".syntax unified\n\t"
#define FC_DIVIDED "\n\t.syntax divided"
static inline __attribute__((always_inline)) void
fc_dot4(const uint8_t *x, const uint8_t *w, int32_t n, int32_t x_zero, int32_t *r)
{
    const uint8_t *w0 = w, *w1 = w + n, *w2 = w1 + n, *w3 = w2 + n;
    const uint8_t *xe = x + (n & ~3);
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#ifdef __clang__
    for (; x < xe; x++) {
        const int32_t v = (int32_t)*x - x_zero;
        a0 += (int32_t)*w0++ * v;
        a1 += (int32_t)*w1++ * v;
        a2 += (int32_t)*w2++ * v;
        a3 += (int32_t)*w3++ * v;
    }
#else
    int32_t xv, t;
    if (x != xe) {
        __asm__ volatile(FC_UNIFIED "1:\n\t" FC_M0_IN("0") FC_M0_IN("1") FC_M0_IN("2") FC_M0_IN("3")
                         "adds   %[x], #4\n\t"
                         "adds   %[w0], #4\n\t"
                         "adds   %[w1], #4\n\t"
                         "adds   %[w2], #4\n\t"
                         "adds   %[w3], #4\n\t"
                         "cmp    %[x], %[xe]\n\t"
                         "bne    1b" FC_DIVIDED
                         : [x] "+l"(x), [w0] "+l"(w0), [w1] "+l"(w1), [w2] "+l"(w2),
                           [w3] "+l"(w3), [xv] "=&l"(xv), [t] "=&l"(t), [a0] "+h"(a0),
                           [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3)
                         : [z] "l"(x_zero), [xe] "h"(xe)
                         : "cc", "memory");
    }
#endif
    for (int32_t k = 0; k < (n & 3); k++) {
        const int32_t v = (int32_t)x[k] - x_zero;
        a0 += (int32_t)w0[k] * v;
        a1 += (int32_t)w1[k] * v;
        a2 += (int32_t)w2[k] * v;
        a3 += (int32_t)w3[k] * v;
    }
    r[0] = a0;
    r[1] = a1;
    r[2] = a2;
    r[3] = a3;
}

static inline __attribute__((always_inline)) int32_t
fc_dot1(const uint8_t *x, const uint8_t *w, int32_t n, int32_t x_zero)
{
    int32_t a = 0;
    for (int32_t i = 0; i < n; i++) {
        a += (int32_t)w[i] * ((int32_t)x[i] - x_zero);
    }
    return a;
}
#define FC_ROWS 4
#endif

/* acc = raw dot - w_zero sum x' + bias, its statistics and y[o] = fqt_out_u8_ch (per
 * channel: M_o) or fqt_out_u8 (per tensor: rq prepared once per call). */
static inline __attribute__((always_inline)) void
fc_out(int32_t a, int32_t corr, const int32_t *bias, uint8_t *y, int32_t o,
       const fqt_quant_params_t *q, const fc_rq_t *rq, int32_t *mm, int per_channel)
{
    int32_t acc = (int32_t)((uint32_t)a - (uint32_t)corr);
    if (bias) {
        acc += bias[o];
    }
    mm[0] = acc < mm[0] ? acc : mm[0];
    mm[1] = acc > mm[1] ? acc : mm[1];
    if (per_channel) {
        fc_rq_t rc;
        fc_rq_set(&rc, q, q->ch_mult[o], q->ch_shift[o]);
        y[o] = fc_rq_out(&rc, q, acc, o);
    } else {
        y[o] = fc_rq_out(rq, q, acc, o);
    }
}

/* The kernel, per_channel a constant (q->ch_mult set or not): two copies, the NULL test is
 * made once per call. */
static inline __attribute__((always_inline)) void
fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
           int32_t in_features, int32_t out_features, const fqt_quant_params_t *q,
           int32_t *stats, int per_channel)
{
    const int32_t n = in_features;
    /* w_zero * sum x', subtracted from every row's raw dot product */
    const int32_t corr =
        (int32_t)((uint32_t)q->w_zero * (uint32_t)fc_sum_x(x, q->x_zero, n));
    fc_rq_t rq;
    fc_rq_set(&rq, q, q->multiplier, q->shift);
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    int32_t o = 0;
    for (; o + FC_ROWS <= out_features; o += FC_ROWS) {
        int32_t r[FC_ROWS];
        fc_dot4(x, w + o * n, n, q->x_zero, r);
        for (int32_t k = 0; k < FC_ROWS; k++) {
            fc_out(r[k], corr, bias, y, o + k, q, &rq, mm, per_channel);
        }
    }
    for (; o < out_features; o++) {
        fc_out(fc_dot1(x, w + o * n, n, q->x_zero), corr, bias, y, o, q, &rq, mm,
               per_channel);
    }
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

static __attribute__((noinline)) void
fc_forward_pt(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
              int32_t in_features, int32_t out_features, const fqt_quant_params_t *q,
              int32_t *stats)
{
    fc_forward(x, w, bias, y, in_features, out_features, q, stats, 0);
}

static __attribute__((noinline)) void
fc_forward_ch(const uint8_t *x, const uint8_t *w, const int32_t *bias, uint8_t *y,
              int32_t in_features, int32_t out_features, const fqt_quant_params_t *q,
              int32_t *stats)
{
    fc_forward(x, w, bias, y, in_features, out_features, q, stats, 1);
}

FQT_API void fqt_fc_forward(const uint8_t *x, const uint8_t *w, const int32_t *bias,
                            uint8_t *y, int32_t in_features, int32_t out_features,
                            const fqt_quant_params_t *q, int32_t *stats)
{
    if (q->ch_mult) {
        fc_forward_ch(x, w, bias, y, in_features, out_features, q, stats);
    } else {
        fc_forward_pt(x, w, bias, y, in_features, out_features, q, stats);
    }
}
