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
 * acc[] holds the accumulators afterwards (as the row-by-row kernel left it). */

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
 * registers (about 25 instead of 18 cycles per entry on the M4). */
#define FC_ERR_ENTRY(off)                                                                 \
    "ldr    %[u], [%[p], #" off "]\n\t"                                                    \
    "ldr    %[v], [%[p], #" off "+4]\n\t"                                                  \
    "ldr    %[e], [%[p], #" off "+8]\n\t"                                                  \
    "ldr    %[u], [%[u], %[i]]\n\t"                                                        \
    "ldr    %[v], [%[v], %[i]]\n\t"                                                        \
    "pkhbt  %[t], %[u], %[v], lsl #16\n\t"                                                 \
    "pkhtb  %[v], %[v], %[u], asr #16\n\t"                                                 \
    "uxtb16 %[u], %[t]\n\t"                                                                \
    "smlad  %[a0], %[u], %[e], %[a0]\n\t"                                                  \
    "uxtb16 %[t], %[t], ror #8\n\t"                                                        \
    "smlad  %[a1], %[t], %[e], %[a1]\n\t"                                                  \
    "uxtb16 %[u], %[v]\n\t"                                                                \
    "smlad  %[a2], %[u], %[e], %[a2]\n\t"                                                  \
    "uxtb16 %[v], %[v], ror #8\n\t"                                                        \
    "smlad  %[a3], %[v], %[e], %[a3]\n\t"

/* a[k] += sum over the list (an even number of entries, >= 2) of w1[i+k] e1 + w2[i+k] e2,
 * k < 4. */
static inline __attribute__((always_inline)) void
fc_err_block(const fc_pair_t *list, const fc_pair_t *end, int32_t i, int32_t *a)
{
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    uint32_t u, v, e, t;
    const fc_pair_t *p = list;
    __asm__ volatile("1:\n\t" FC_ERR_ENTRY("0") FC_ERR_ENTRY("12")
                     "adds   %[p], %[p], #24\n\t"
                     "cmp    %[p], %[end]\n\t"
                     "bne    1b"
                     : [p] "+r"(p), [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2),
                       [a3] "+r"(a3), [u] "=&r"(u), [v] "=&r"(v), [e] "=&r"(e), [t] "=&r"(t)
                     : [i] "r"(i), [end] "r"(end)
                     : "cc", "memory");
    a[0] = a0;
    a[1] = a1;
    a[2] = a2;
    a[3] = a3;
}

/* acc[i] (+)= sum over the list of w1[i] e1 + w2[i] e2, i < n; first: start from 0. */
static void fc_err_pass(const fc_pair_t *list, int32_t np, int32_t *acc, int32_t n, int first)
{
    const fc_pair_t *end = list + np;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        int32_t a[4] = {0, 0, 0, 0};
        if (!first) {
            a[0] = acc[i];
            a[1] = acc[i + 1];
            a[2] = acc[i + 2];
            a[3] = acc[i + 3];
        }
        if (np) {
            fc_err_block(list, end, i, a);
        }
        acc[i] = a[0];
        acc[i + 1] = a[1];
        acc[i + 2] = a[2];
        acc[i + 3] = a[3];
    }
    for (; i < n; i++) {
        int32_t a = first ? 0 : acc[i];
        for (const fc_pair_t *p = list; p < end; p++) {
            a += (int32_t)p->p1[i] * (int16_t)(p->e12 & 0xFFFFu) +
                 (int32_t)p->p2[i] * ((int32_t)p->e12 >> 16);
        }
        acc[i] = a;
    }
}
#else
typedef struct {
    const uint8_t *p;
    int32_t e;
} fc_pair_t;

static void fc_err_pass(const fc_pair_t *list, int32_t np, int32_t *acc, int32_t n, int first)
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
        acc[i] = a0;
        acc[i + 1] = a1;
        acc[i + 2] = a2;
        acc[i + 3] = a3;
    }
    for (; i < n; i++) {
        int32_t a = first ? 0 : acc[i];
        for (const fc_pair_t *p = list; p < end; p++) {
            a += p->p[i] * p->e;
        }
        acc[i] = a;
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
            fc_err_pass(list, np, acc, n, first);
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
    if (np || first) {
        fc_err_pass(list, np, acc, n, first);
    }
    /* the zero-point correction w_zero * sum_o e[o] */
    const uint32_t corr = (uint32_t)q->w_zero * esum;
    for (int32_t i = 0; i < n; i++) {
        acc[i] = (int32_t)((uint32_t)acc[i] - corr);
    }
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
/* One row's 4 gradients at g: a_k = g[k] + e x'[k] (e: the B or T half of e12). */
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
        fqt_rowacc(gw + o * in_features, x, q->x_zero, e, in_features);
#endif
    }
#ifdef FQT_FC_DSP
    if (have) {
        fqt_rowacc(pending, x, q->x_zero, pe, in_features);
    }
#endif
}
