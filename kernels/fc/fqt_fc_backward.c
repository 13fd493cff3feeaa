/* Fully connected backward pass: error to the layer below and gradients (see fqt.h). */
#include "fc/fqt_fc_common.h"

/* ---------------------------------------------------------------------------------- */
/* Error: e_in[i] = R(sum_o (w[o][i] - w_zero) e[o]), e[o] = e_out[o] - x_zero, o over the
 * visited rows (kept list or all) with e[o] != 0.  Zero-point algebra:
 *   sum_o (w[o][i] - w_zero) e[o] = sum_o w[o][i] e[o] - w_zero * sum_o e[o]
 * (exact modulo 2^32): the raw weight bytes are multiplied, one correction per input.
 * The non-zero rows are first compacted into a list on the stack (FC_CHUNK entries at a
 * time); then for each block of 4 inputs the accumulators stay in registers over the whole
 * list, and are stored to acc[] once.  DSP path: an entry is a pair of rows (two row
 * pointers and both errors as int16 halves of one word); per 4 inputs the two rows' words
 * are interleaved with PKHBT / PKHTB and widened with UXTB16 into (w1[i], w2[i]) pairs, and
 * one SMLAD adds both rows' products.  Generic path: one row per entry, one MULS per MAC.
 * The last pass subtracts the correction as it stores (no loop of its own); then
 * fqt_requant_u8 (its SMMLA loop was faster than the requantization fused into the pass,
 * which spilled).  acc[] holds the accumulators afterwards (as the row-by-row kernel left
 * it). */

#define FC_CHUNK 16 /* list entries per pass over the inputs (even) */

#ifdef FQT_FC_DSP
typedef struct {
    const uint8_t *p1, *p2;
    uint32_t e12; /* e1 in bits 0..15, e2 in bits 16..31 (int16 each) */
} fc_pair_t;

/* One list entry for inputs i .. i + 3: w1, w2 = its rows' words (any alignment), then
 * lo = (w1[i], w1[i+1], w2[i], w2[i+1]) (PKHBT), hi = the same of i + 2, i + 3 (PKHTB),
 * UXTB16 / UXTB16 ROR 8 give (w1[k], w2[k]) and SMLAD adds w1[k] e1 + w2[k] e2 to a_k.
 * Inline assembly: gcc 12 and clang neither pack with PKHBT / PKHTB nor hold the block in
 * registers (about 25 instead of 18 cycles per entry on the M4).  Each SMLAD follows the
 * next UXTB16 rather than its own, so that the Cortex-M7 issues the two as a pair.  (Reading
 * the next entry's row pointers ahead, in two more registers, was slower.) */
#define FC_ERR_ENTRY(off)                                                                 \
    "ldr    %[u], [%[p], #" off "]\n\t"                                                    \
    "ldr    %[v], [%[p], #" off "+4]\n\t"                                                  \
    "ldr    %[e], [%[p], #" off "+8]\n\t"                                                  \
    "ldr    %[u], [%[u], %[i]]\n\t"                                                        \
    "ldr    %[v], [%[v], %[i]]\n\t"                                                        \
    "pkhbt  %[t], %[u], %[v], lsl #16\n\t"                                                 \
    "pkhtb  %[v], %[v], %[u], asr #16\n\t"                                                 \
    "uxtb16 %[u], %[t]\n\t"                                                                \
    "uxtb16 %[t], %[t], ror #8\n\t"                                                        \
    "smlad  %[a0], %[u], %[e], %[a0]\n\t"                                                  \
    "uxtb16 %[u], %[v]\n\t"                                                                \
    "smlad  %[a1], %[t], %[e], %[a1]\n\t"                                                  \
    "uxtb16 %[v], %[v], ror #8\n\t"                                                        \
    "smlad  %[a2], %[u], %[e], %[a2]\n\t"                                                  \
    "smlad  %[a3], %[v], %[e], %[a3]\n\t"

#define FC_ERR_LOOP(a0, a1, a2, a3)                                                       \
    do {                                                                                  \
        uint32_t u_, v_, e_, t_;                                                          \
        const fc_pair_t *p_ = list;                                                       \
        __asm__ volatile("1:\n\t" FC_ERR_ENTRY("0") FC_ERR_ENTRY("12")                     \
                         "adds   %[p], %[p], #24\n\t"                                     \
                         "cmp    %[p], %[end]\n\t"                                        \
                         "bne    1b"                                                      \
                         : [p] "+r"(p_), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2),      \
                           [a3] "+r"(a3), [u] "=&r"(u_), [v] "=&r"(v_), [e] "=&r"(e_),     \
                           [t] "=&r"(t_)                                                  \
                         : [i] "r"(i), [end] "r"(end)                                     \
                         : "cc", "memory");                                               \
    } while (0)

/* acc[i] (+)= sum over the list of w1[i] e1 + w2[i] e2, i < n; first: start from 0; the
 * last pass subtracts corr (the zero-point correction w_zero sum e; 0 before) as it
 * stores.  Per 4 inputs, FC_ERR_LOOP adds the list (an even number of entries, >= 2). */
static void fc_err_pass(const fc_pair_t *list, int32_t np, int32_t *acc, int32_t n, int first,
                        uint32_t corr)
{
    const fc_pair_t *end = list + np;
    int32_t i = 0;
    if (np && first) {
        for (; i + 4 <= n; i += 4) {
            int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
            FC_ERR_LOOP(a0, a1, a2, a3);
            int32_t *d = acc + i;
            d[0] = (int32_t)((uint32_t)a0 - corr);
            d[1] = (int32_t)((uint32_t)a1 - corr);
            d[2] = (int32_t)((uint32_t)a2 - corr);
            d[3] = (int32_t)((uint32_t)a3 - corr);
        }
    } else if (np) {
        for (; i + 4 <= n; i += 4) {
            int32_t *d = acc + i;
            int32_t a0 = d[0], a1 = d[1], a2 = d[2], a3 = d[3];
            FC_ERR_LOOP(a0, a1, a2, a3);
            d[0] = (int32_t)((uint32_t)a0 - corr);
            d[1] = (int32_t)((uint32_t)a1 - corr);
            d[2] = (int32_t)((uint32_t)a2 - corr);
            d[3] = (int32_t)((uint32_t)a3 - corr);
        }
    }
    for (; i < n; i++) {
        int32_t a = first ? 0 : acc[i];
        for (const fc_pair_t *p = list; p < end; p++) {
            a += (int32_t)p->p1[i] * (int16_t)(p->e12 & 0xFFFFu) +
                 (int32_t)p->p2[i] * ((int32_t)p->e12 >> 16);
        }
        acc[i] = (int32_t)((uint32_t)a - corr);
    }
}
#else
typedef struct {
    const uint8_t *p;
    int32_t e;
} fc_pair_t;

static void fc_err_pass(const fc_pair_t *list, int32_t np, int32_t *acc, int32_t n, int first,
                        uint32_t corr)
{
    const fc_pair_t *end = list + np;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        if (!first) {
            a0 = acc[i];
            a1 = acc[i + 1];
            a2 = acc[i + 2];
            a3 = acc[i + 3];
        }
        for (const fc_pair_t *p = list; p < end; p++) {
            const uint8_t *r = p->p + i;
            const int32_t e = p->e;
            a0 += r[0] * e;
            a1 += r[1] * e;
            a2 += r[2] * e;
            a3 += r[3] * e;
        }
        acc[i] = (int32_t)((uint32_t)a0 - corr);
        acc[i + 1] = (int32_t)((uint32_t)a1 - corr);
        acc[i + 2] = (int32_t)((uint32_t)a2 - corr);
        acc[i + 3] = (int32_t)((uint32_t)a3 - corr);
    }
    for (; i < n; i++) {
        int32_t a = first ? 0 : acc[i];
        for (const fc_pair_t *p = list; p < end; p++) {
            a += p->p[i] * p->e;
        }
        acc[i] = (int32_t)((uint32_t)a - corr);
    }
}
#endif

FQT_API void fqt_fc_backward_error(const uint8_t *w, const uint8_t *e_out, uint8_t *e_in,
                                   int32_t in_features, int32_t out_features,
                                   const fqt_quant_params_t *q, int32_t *acc, int32_t *stats,
                                   const fqt_select_t *sel)
{
    const int32_t n = in_features;
    const uint16_t *kept = sel ? sel->kept : 0;
    const int32_t nv = sel ? sel->k : out_features;
    fc_pair_t list[FC_CHUNK];
    int32_t np = 0, first = 1;
    uint32_t esum = 0;
#ifdef FQT_FC_DSP
    const uint8_t *pending = 0; /* a row waiting for its pair partner (have: one is) */
    int32_t pe = 0, have = 0;
#endif
    for (int32_t j = 0; j < nv; j++) {
        const int32_t o = kept ? kept[j] : j;
        const int32_t e = (int32_t)e_out[o] - q->x_zero;
        if (e == 0) {
            continue;
        }
        esum += (uint32_t)e;
#ifdef FQT_FC_DSP
        if (!have) {
            pending = w + o * n;
            pe = e;
            have = 1;
            continue;
        }
        list[np].p1 = pending;
        list[np].p2 = w + o * n;
        list[np].e12 = ((uint32_t)pe & 0xFFFFu) | ((uint32_t)e << 16);
        have = 0;
#else
        list[np].p = w + o * n;
        list[np].e = e;
#endif
        if (++np == FC_CHUNK) {
            fc_err_pass(list, np, acc, n, first, 0);
            np = 0;
            first = 0;
        }
    }
#ifdef FQT_FC_DSP
    if (have) { /* the odd row: paired with itself, second error 0 */
        list[np].p1 = pending;
        list[np].p2 = pending;
        list[np].e12 = (uint32_t)pe & 0xFFFFu;
        np++;
    }
    if (np & 1) { /* fc_err_block takes entries two at a time: one that adds 0 */
        list[np] = list[np - 1];
        list[np].e12 = 0;
        np++;
    }
#endif
    /* the last pass (possibly over an empty list) subtracts the zero-point correction
     * w_zero * sum_o e[o] */
    fc_err_pass(list, np, acc, n, first, (uint32_t)q->w_zero * esum);
    int32_t mm[2] = {INT32_MAX, INT32_MIN};
    fqt_rq_t rq;
    fqt_rq_init(&rq, q);
    fqt_requant_u8(&rq, acc, e_in, in_features, 0, mm);
    if (stats) {
        stats[0] = mm[0];
        stats[1] = mm[1];
    }
}

/* ---------------------------------------------------------------------------------- */
/* Weights: gw[o][i] += e[o] (x[i] - x_zero), gb[o] += e[o], e[o] = e_out[o] - w_zero, o over
 * the visited rows with e[o] != 0.  One int32 read-modify-write per weight is inherent;
 * DSP path: two rows per pass share x' = x - x_zero, widened once per 4 inputs by UXTAB16
 * from (-x_zero, -x_zero) into signed 16-bit pairs (bytes 0, 2 and 1, 3); both errors sit
 * in one word (e1 low, e2 high half) and SMLABB / SMLATB / SMLABT / SMLATT add the
 * products.  A row left alone (an odd count) takes fqt_rowacc. */
#ifdef FQT_FC_DSP
/* One row's 4 gradients at g: a_k = g[k] + e x'[k] (e: the B or T half of e12).  (Row 1's
 * stores alternating with row 2's loads pair on the Cortex-M7, 5 % faster there, but cost
 * the Cortex-M4 18 %: its loads pipeline only behind loads.) */
#define FC_GW_ROW(g, h)                                                                   \
    "ldr    %[a0], [%[" g "]]\n\t"                                                         \
    "ldr    %[a1], [%[" g "], #4]\n\t"                                                     \
    "ldr    %[a2], [%[" g "], #8]\n\t"                                                     \
    "ldr    %[a3], [%[" g "], #12]\n\t"                                                    \
    "smlab" h " %[a0], %[x02], %[e], %[a0]\n\t"                                            \
    "smlab" h " %[a1], %[x13], %[e], %[a1]\n\t"                                            \
    "smlat" h " %[a2], %[x02], %[e], %[a2]\n\t"                                            \
    "smlat" h " %[a3], %[x13], %[e], %[a3]\n\t"                                            \
    "str    %[a0], [%[" g "]], #16\n\t"                                                    \
    "str    %[a1], [%[" g "], #-12]\n\t"                                                   \
    "str    %[a2], [%[" g "], #-8]\n\t"                                                    \
    "str    %[a3], [%[" g "], #-4]\n\t"

/* 4 inputs of two rows: x' from one word (read into x13, widened in place), then row 1
 * (errors' bottom half) and row 2 (top half).  Inline assembly: 12 registers; the C
 * version spilled with gcc 12 and clang. */
#define FC_GW_STEP                                                                        \
    "ldr    %[x13], [%[x]], #4\n\t"                                                        \
    "uxtab16 %[x02], %[z], %[x13]\n\t"                                                     \
    "uxtab16 %[x13], %[z], %[x13], ror #8\n\t" FC_GW_ROW("g1", "b") FC_GW_ROW("g2", "t")

#define FC_GW_OPERANDS                                                                    \
    [x] "+r"(x), [g1] "+r"(g1), [g2] "+r"(g2), [x02] "=&r"(x02), [x13] "=&r"(x13),        \
        [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3)                    \
    : [xe] "r"(xe), [z] "r"(z2), [e] "r"(e12)

/* gw rows g1, g2 += e1 x', e2 x' (e12 = e1 | e2 << 16, int16 halves). */
static void fc_gw_pair(const uint8_t *x, int32_t x_zero, int32_t *g1, int32_t *g2,
                       uint32_t e12, int32_t n)
{
    const uint32_t z2 = ((uint32_t)-x_zero & 0xFFFFu) * 0x00010001u; /* -x_zero twice */
    const uint8_t *xe = x + (n & ~7);
    int32_t a0, a1, a2, a3;
    uint32_t x02, x13;
    if (x != xe) { /* 8 inputs per iteration */
        __asm__ volatile("1:\n\t" FC_GW_STEP FC_GW_STEP "cmp    %[x], %[xe]\n\t"
                         "bne    1b"
                         : FC_GW_OPERANDS
                         : "cc", "memory");
    }
    if (n & 4) {
        __asm__ volatile(FC_GW_STEP : FC_GW_OPERANDS : "memory");
    }
    const int32_t e1 = (int16_t)(e12 & 0xFFFFu), e2 = (int32_t)e12 >> 16;
    for (int32_t k = 0; k < (n & 3); k++) {
        const int32_t xv = (int32_t)x[k] - x_zero;
        g1[k] += e1 * xv;
        g2[k] += e2 * xv;
    }
}
#else
/* Generic path (M0+): x' = x - x_zero is formed FC_GW_CHUNK inputs at a time as int32 in a
 * stack buffer (once per call when at most FC_GW_ROWS rows have e != 0) and every such row
 * adds e x' to its chunk of gw in fc_gw_m0 (below).  Per 2 weights: LDM of 2 x' (3 cycles),
 * LDM of 2 gw (3), 2 MULS by the register-held e, 2 ADDS, STM (3): 6.5 cycles per weight,
 * against 13 for the byte loop (LDRB, SUBS, LDR, MULS, ADDS, STR, loop). */
#define FC_GW_CHUNK 32 /* x' entries on the stack (128 bytes) */
#define FC_GW_ROWS 16  /* rows listed at a time (128 bytes) */

typedef struct {
    int32_t *g; /* the row of gw */
    int32_t e;
} fc_gwrow_t;

/* For each entry r of [list, end): r->g[off + k] += r->e xb[k], k < cnt (a multiple of 8,
 * > 0); off, cnt in bytes.  A function in assembly: LDM / STM register lists must be in
 * ascending register order, so the registers are fixed, and the inner loop needs all 8 low
 * registers (r7 included, which clang keeps as its frame pointer).  AAPCS: r0 = list,
 * r1 = end, r2 = xb, r3 = cnt, [sp] = off.  Per row: r8 = end, r9 = xb, r10 = off,
 * r11 = the next entry, ip = the end of xb; inner loop: r1 = x', r0 reads gw, r7 writes it
 * back, r2 = e, r3 .. r6 the values. */
void fc_gw_m0(const fc_gwrow_t *list, const fc_gwrow_t *end, const int32_t *xb, int32_t cnt,
              int32_t off);
#define FC_GW_M0_2                                                                        \
    "ldm    r1!, {r3, r4}\n\t" /* x'[k], x'[k+1] */                                       \
    "ldm    r0!, {r5, r6}\n\t" /* g[k], g[k+1] */                                         \
    "muls   r3, r2\n\t"                                                                   \
    "muls   r4, r2\n\t"                                                                   \
    "adds   r5, r5, r3\n\t"                                                               \
    "adds   r6, r6, r4\n\t"                                                               \
    "stm    r7!, {r5, r6}\n\t"
__asm__(".pushsection .text.fc_gw_m0,\"ax\",%progbits\n\t"
        ".syntax unified\n\t"
        ".thumb\n\t"
        ".p2align 2\n\t"
        ".global fc_gw_m0\n\t"
        ".hidden fc_gw_m0\n\t"
        ".type fc_gw_m0, %function\n\t"
        ".thumb_func\n"
        "fc_gw_m0:\n\t"
        "push   {r4, r5, r6, r7, lr}\n\t"
        "mov    r4, r8\n\t"
        "mov    r5, r9\n\t"
        "mov    r6, r10\n\t"
        "mov    r7, r11\n\t"
        "push   {r4, r5, r6, r7}\n\t"
        "ldr    r4, [sp, #36]\n\t" /* off: the fifth argument, above the 9 saved words */
        "mov    r8, r1\n\t"
        "mov    r9, r2\n\t"
        "mov    r10, r4\n\t"
        "adds   r3, r3, r2\n\t"
        "mov    ip, r3\n"
        "2:\n\t" /* per row */
        "ldm    r0!, {r5, r6}\n\t" /* g, e */
        "mov    r11, r0\n\t"
        "movs   r0, r5\n\t"
        "add    r0, r10\n\t"
        "movs   r7, r0\n\t"
        "movs   r2, r6\n\t"
        "mov    r1, r9\n"
        "1:\n\t" FC_GW_M0_2 FC_GW_M0_2 FC_GW_M0_2 FC_GW_M0_2
        "cmp    r1, ip\n\t"
        "bne    1b\n\t"
        "mov    r0, r11\n\t"
        "cmp    r0, r8\n\t"
        "bne    2b\n\t"
        "pop    {r4, r5, r6, r7}\n\t"
        "mov    r8, r4\n\t"
        "mov    r9, r5\n\t"
        "mov    r10, r6\n\t"
        "mov    r11, r7\n\t"
        "pop    {r4, r5, r6, r7, pc}\n\t"
        ".size fc_gw_m0, . - fc_gw_m0\n\t"
#ifndef __clang__
        ".syntax divided\n\t" /* gcc's own Thumb-1 output follows */
#endif
        ".popsection");

/* gw rows of the list += e x' (all inputs). */
static void fc_gw_list(const fc_gwrow_t *list, int32_t nl, const uint8_t *x, int32_t x_zero,
                       int32_t n)
{
    int32_t xb[FC_GW_CHUNK];
    for (int32_t i0 = 0; i0 < n; i0 += FC_GW_CHUNK) {
        const int32_t c = n - i0 < FC_GW_CHUNK ? n - i0 : FC_GW_CHUNK;
        const int32_t c8 = c & ~7;
        const uint8_t *xc = x + i0;
        int32_t k = 0;
        for (; k < c8; k += 8) {
            int32_t *b = xb + k;
            const uint8_t *xk = xc + k;
            b[0] = (int32_t)xk[0] - x_zero;
            b[1] = (int32_t)xk[1] - x_zero;
            b[2] = (int32_t)xk[2] - x_zero;
            b[3] = (int32_t)xk[3] - x_zero;
            b[4] = (int32_t)xk[4] - x_zero;
            b[5] = (int32_t)xk[5] - x_zero;
            b[6] = (int32_t)xk[6] - x_zero;
            b[7] = (int32_t)xk[7] - x_zero;
        }
        for (; k < c; k++) {
            xb[k] = (int32_t)xc[k] - x_zero;
        }
        if (c8) {
            fc_gw_m0(list, list + nl, xb, c8 * 4, i0 * 4);
        }
        for (int32_t r = 0; r < nl && c8 != c; r++) {
            int32_t *g = list[r].g + i0;
            const int32_t e = list[r].e;
            for (int32_t k = c8; k < c; k++) {
                g[k] += e * xb[k];
            }
        }
    }
}
#endif

FQT_API void fqt_fc_backward_weights(const uint8_t *x, const uint8_t *e_out, int32_t *gw,
                                     int32_t *gb, int32_t in_features, int32_t out_features,
                                     const fqt_quant_params_t *q, const fqt_select_t *sel)
{
    const uint16_t *kept = sel ? sel->kept : 0;
    const int32_t n = sel ? sel->k : out_features;
#ifdef FQT_FC_DSP
    int32_t *pending = 0; /* a row waiting for its pair partner (have: one is) */
    int32_t pe = 0, have = 0;
#else
    fc_gwrow_t list[FC_GW_ROWS];
    int32_t nl = 0;
#endif
    for (int32_t j = 0; j < n; j++) {
        const int32_t o = kept ? kept[j] : j;
        int32_t e = (int32_t)e_out[o] - q->w_zero;
        if (e == 0) {
            continue; /* zero error: no gradient */
        }
        if (gb) {
            gb[o] += e;
        }
#ifdef FQT_FC_DSP
        if (!have) {
            pending = gw + o * in_features;
            pe = e;
            have = 1;
            continue;
        }
        fc_gw_pair(x, q->x_zero, pending, gw + o * in_features,
                   ((uint32_t)pe & 0xFFFFu) | ((uint32_t)e << 16), in_features);
        have = 0;
#else
        list[nl].g = gw + o * in_features;
        list[nl].e = e;
        if (++nl == FC_GW_ROWS) {
            fc_gw_list(list, nl, x, q->x_zero, in_features);
            nl = 0;
        }
#endif
    }
#ifdef FQT_FC_DSP
    if (have) {
        fqt_rowacc(pending, x, q->x_zero, pe, in_features);
    }
#else
    if (nl) {
        fc_gw_list(list, nl, x, q->x_zero, in_features);
    }
#endif
}
