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
 * Rm, ROR #8 as two instructions.  Per row the SMLAD of the ROR 8 half comes first: it
 * pairs with the second UXTB16 on the dual-issue Cortex-M7 (emnist-cnn fc1 1.33 -> 1.08
 * cycles per MAC there). */
#define FC_STEP                                                                           \
    "ldr    %[x02], [%[x]], #4\n\t"                                                        \
    "ldr    %[t], [%[c], #4]\n\t"                                                            \
    "ldr    %[v], [%[wa], %[n]]\n\t"                                                       \
    "uxtab16 %[x13], %[t], %[x02], ror #8\n\t"                                            \
    "uxtab16 %[x02], %[t], %[x02]\n\t"                                                    \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a1], %[t], %[x13], %[a1]\n\t"                                                \
    "smlad  %[a1], %[v], %[x02], %[a1]\n\t"                                                \
    "ldr    %[v], [%[wa]], #4\n\t"                                                         \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a0], %[t], %[x13], %[a0]\n\t"                                                \
    "smlad  %[a0], %[v], %[x02], %[a0]\n\t"                                                \
    "ldr    %[v], [%[wb], %[n]]\n\t"                                                       \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a3], %[t], %[x13], %[a3]\n\t"                                                \
    "smlad  %[a3], %[v], %[x02], %[a3]\n\t"                                                \
    "ldr    %[v], [%[wb]], #4\n\t"                                                         \
    "uxtb16 %[t], %[v], ror #8\n\t"                                                        \
    "uxtb16 %[v], %[v]\n\t"                                                                \
    "smlad  %[a2], %[t], %[x13], %[a2]\n\t"                                                \
    "smlad  %[a2], %[v], %[x02], %[a2]\n\t"

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
 * high-register accumulator.  Registers: r0 = x, r1 .. r4 = rows 0 .. 3, r5 = x',
 * r6 = the product, r7 = x_zero, r8 .. r11 = the sums, ip = the end of x. */
#define FC_M0_IN(k)                                                                       \
    "ldrb   r5, [r0, #" k "]\n\t"                                                          \
    "subs   r5, r5, r7\n\t"                                                                \
    "ldrb   r6, [r1, #" k "]\n\t"                                                          \
    "muls   r6, r5\n\t"                                                                    \
    "add    r8, r6\n\t"                                                                    \
    "ldrb   r6, [r2, #" k "]\n\t"                                                          \
    "muls   r6, r5\n\t"                                                                    \
    "add    r9, r6\n\t"                                                                    \
    "ldrb   r6, [r3, #" k "]\n\t"                                                          \
    "muls   r6, r5\n\t"                                                                    \
    "add    r10, r6\n\t"                                                                   \
    "ldrb   r6, [r4, #" k "]\n\t"                                                          \
    "muls   r6, r5\n\t"                                                                    \
    "add    r11, r6\n\t"

/* r[k] = sum_i w[k n + i] x'[i], i < (n & ~3), k < 4 (raw weights): one x' per input for 4
 * rows, 4 inputs per iteration (5.25 cycles per MAC).  A function in assembly: the loop
 * needs all 8 low registers and 5 high ones; gcc 12 spilled the row pointers of the C loop
 * (8 cycles per MAC) and clang, which keeps r7 as its frame pointer, found no allocation
 * for inline assembly and spilled more (13 cycles per MAC).  AAPCS: r0 = x, r1 = w,
 * r2 = n, r3 = x_zero, [sp] = r. */
void fc_dot4_m0(const uint8_t *x, const uint8_t *w, int32_t n, int32_t x_zero, int32_t *r);
__asm__(".pushsection .text.fc_dot4_m0,\"ax\",%progbits\n\t"
        ".syntax unified\n\t"
        ".thumb\n\t"
        ".p2align 2\n\t"
        ".global fc_dot4_m0\n\t"
        ".hidden fc_dot4_m0\n\t"
        ".type fc_dot4_m0, %function\n\t"
        ".thumb_func\n"
        "fc_dot4_m0:\n\t"
        "push   {r4, r5, r6, r7, lr}\n\t"
        "mov    r4, r8\n\t"
        "mov    r5, r9\n\t"
        "mov    r6, r10\n\t"
        "mov    r7, r11\n\t"
        "push   {r4, r5, r6, r7}\n\t"
        "movs   r7, r3\n\t" /* x_zero */
        "lsrs   r3, r2, #2\n\t"
        "lsls   r3, r3, #2\n\t"
        "adds   r3, r0, r3\n\t"
        "mov    ip, r3\n\t" /* x + (n & ~3) */
        "movs   r4, r2\n\t" /* n */
        "adds   r2, r1, r4\n\t" /* row 1 */
        "adds   r3, r2, r4\n\t" /* row 2 */
        "adds   r4, r3, r4\n\t" /* row 3 */
        "movs   r5, #0\n\t"
        "mov    r8, r5\n\t"
        "mov    r9, r5\n\t"
        "mov    r10, r5\n\t"
        "mov    r11, r5\n\t"
        "cmp    r0, ip\n\t"
        "beq    2f\n"
        "1:\n\t" FC_M0_IN("0") FC_M0_IN("1") FC_M0_IN("2") FC_M0_IN("3")
        "adds   r0, #4\n\t"
        "adds   r1, #4\n\t"
        "adds   r2, #4\n\t"
        "adds   r3, #4\n\t"
        "adds   r4, #4\n\t"
        "cmp    r0, ip\n\t"
        "bne    1b\n"
        "2:\n\t"
        "ldr    r5, [sp, #36]\n\t" /* r: the fifth argument, above the 9 saved words */
        "mov    r6, r8\n\t"
        "str    r6, [r5]\n\t"
        "mov    r6, r9\n\t"
        "str    r6, [r5, #4]\n\t"
        "mov    r6, r10\n\t"
        "str    r6, [r5, #8]\n\t"
        "mov    r6, r11\n\t"
        "str    r6, [r5, #12]\n\t"
        "pop    {r4, r5, r6, r7}\n\t"
        "mov    r8, r4\n\t"
        "mov    r9, r5\n\t"
        "mov    r10, r6\n\t"
        "mov    r11, r7\n\t"
        "pop    {r4, r5, r6, r7, pc}\n\t"
        ".size fc_dot4_m0, . - fc_dot4_m0\n\t"
#ifndef __clang__
        ".syntax divided\n\t" /* gcc's own Thumb-1 output follows */
#endif
        ".popsection");

/* r[k] = sum_i w[k n + i] x'[i], k < 4 (raw weights). */
static inline __attribute__((always_inline)) void
fc_dot4(const uint8_t *x, const uint8_t *w, int32_t n, int32_t x_zero, int32_t *r)
{
    fc_dot4_m0(x, w, n, x_zero, r);
    const int32_t n4 = n & ~3;
    const uint8_t *w0 = w + n4, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
    const uint8_t *xt = x + n4;
    for (int32_t k = 0; k < (n & 3); k++) {
        const int32_t v = (int32_t)xt[k] - x_zero;
        r[0] += (int32_t)w0[k] * v;
        r[1] += (int32_t)w1[k] * v;
        r[2] += (int32_t)w2[k] * v;
        r[3] += (int32_t)w3[k] * v;
    }
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
