/* Dynamic partial gradient updates: keep the top-k structures by error magnitude (fqt.h). */
#include "common/fqt_internal.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4); /* unaligned LDR: allowed on ARMv7-M */
    return v;
}

/* acc + bytes 1 and 3 of v as halfwords (UXTAB16 with its rotation, one instruction). */
static inline __attribute__((always_inline)) uint32_t uxtab16_ror8(uint32_t acc, uint32_t v)
{
    uint32_t r;
    __asm__("uxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(acc), "r"(v));
    return r;
}

/* |e - z| per byte lane, lanes where y <= yz first replaced by z (masked: SEL under the GE
 * flags of USUB8(y, yz + 1), set where y > yz): UQSUB8(e, z) | UQSUB8(z, e), one of the two
 * is 0. */
static inline __attribute__((always_inline)) uint32_t
absdiff4(uint32_t e4, uint32_t y4, uint32_t z4, uint32_t yz4, int masked)
{
    if (masked) {
        (void)__usub8(y4, yz4);
        e4 = __sel(e4, z4);
    }
    return __uqsub8(e4, z4) | __uqsub8(z4, e4);
}

/* m[0..3] = magnitudes of channels c .. c+3 (4 byte lanes of one word per position), the
 * lanes' |e - z| (absdiff4) summed in 16-bit lane pairs (UXTAB16) that are flushed to 32
 * bits every 256 positions (256 * 255 fits 16 bits); two positions per iteration (their
 * loads pipelined).  masked: y is read; yz < 255 (yz == 255 masks everything: the caller). */
static inline __attribute__((always_inline)) void
mag4(const uint8_t *e, const uint8_t *y, int32_t N, int32_t P, uint32_t z4, uint32_t yz4,
     int masked, uint32_t *m)
{
    uint32_t m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    const int32_t dy = masked ? (int32_t)(y - e) : 0, N2 = 2 * N;
    for (int32_t p0 = 0; p0 < P; p0 += 256) {
        const int32_t n = P - p0 < 256 ? P - p0 : 256;
        uint32_t a02 = 0, a13 = 0;
        const uint8_t *end = e + (n >> 1) * N2;
        if (masked && n >= 4) {
            /* 4 positions per iteration, each pair's 4 loads issued together (pipelined);
               the steps of absdiff4 and the UXTAB16 sums as above */
            const uint8_t *const end4 = e + (n >> 2) * 2 * N2;
            const uint8_t *yy = e + dy;
            uint32_t e0, e1, y0, y1;
            __asm__ volatile(
                "1:\n\t"
                "ldr %[e0], [%[e]]\n\t"
                "ldr %[e1], [%[e], %[N]]\n\t"
                "ldr %[y0], [%[y]]\n\t"
                "ldr %[y1], [%[y], %[N]]\n\t"
                "usub8 %[y0], %[y0], %[yz]\n\t"
                "sel %[e0], %[e0], %[z]\n\t"
                "usub8 %[y1], %[y1], %[yz]\n\t"
                "sel %[e1], %[e1], %[z]\n\t"
                "uqsub8 %[y0], %[e0], %[z]\n\t"
                "uqsub8 %[e0], %[z], %[e0]\n\t"
                "uqsub8 %[y1], %[e1], %[z]\n\t"
                "uqsub8 %[e1], %[z], %[e1]\n\t"
                "orr %[e0], %[e0], %[y0]\n\t"
                "orr %[e1], %[e1], %[y1]\n\t"
                "add %[e], %[e], %[N], lsl #1\n\t"
                "add %[y], %[y], %[N], lsl #1\n\t"
                "uxtab16 %[a02], %[a02], %[e0]\n\t"
                "uxtab16 %[a13], %[a13], %[e0], ror #8\n\t"
                "uxtab16 %[a02], %[a02], %[e1]\n\t"
                "uxtab16 %[a13], %[a13], %[e1], ror #8\n\t"
                "ldr %[e0], [%[e]]\n\t"
                "ldr %[e1], [%[e], %[N]]\n\t"
                "ldr %[y0], [%[y]]\n\t"
                "ldr %[y1], [%[y], %[N]]\n\t"
                "usub8 %[y0], %[y0], %[yz]\n\t"
                "sel %[e0], %[e0], %[z]\n\t"
                "usub8 %[y1], %[y1], %[yz]\n\t"
                "sel %[e1], %[e1], %[z]\n\t"
                "uqsub8 %[y0], %[e0], %[z]\n\t"
                "uqsub8 %[e0], %[z], %[e0]\n\t"
                "uqsub8 %[y1], %[e1], %[z]\n\t"
                "uqsub8 %[e1], %[z], %[e1]\n\t"
                "orr %[e0], %[e0], %[y0]\n\t"
                "orr %[e1], %[e1], %[y1]\n\t"
                "add %[e], %[e], %[N], lsl #1\n\t"
                "add %[y], %[y], %[N], lsl #1\n\t"
                "uxtab16 %[a02], %[a02], %[e0]\n\t"
                "uxtab16 %[a13], %[a13], %[e0], ror #8\n\t"
                "uxtab16 %[a02], %[a02], %[e1]\n\t"
                "uxtab16 %[a13], %[a13], %[e1], ror #8\n\t"
                "cmp %[e], %[end]\n\t"
                "bne 1b"
                : [e] "+r"(e), [y] "+r"(yy), [a02] "+r"(a02), [a13] "+r"(a13), [e0] "=&r"(e0),
                  [e1] "=&r"(e1), [y0] "=&r"(y0), [y1] "=&r"(y1)
                : [N] "r"(N), [end] "r"(end4), [z] "r"(z4), [yz] "r"(yz4)
                : "cc", "memory");
        }
        for (; e != end; e += N2) {
            const uint32_t e0 = load_u32(e), e1 = load_u32(e + N);
            const uint32_t y0 = masked ? load_u32(e + dy) : 0;
            const uint32_t y1 = masked ? load_u32(e + N + dy) : 0;
            const uint32_t d0 = absdiff4(e0, y0, z4, yz4, masked);
            const uint32_t d1 = absdiff4(e1, y1, z4, yz4, masked);
            a02 = __uxtab16(a02, d0);
            a13 = uxtab16_ror8(a13, d0);
            a02 = __uxtab16(a02, d1);
            a13 = uxtab16_ror8(a13, d1);
        }
        if (n & 1) {
            const uint32_t d0 = absdiff4(load_u32(e), masked ? load_u32(e + dy) : 0, z4, yz4,
                                         masked);
            a02 = __uxtab16(a02, d0);
            a13 = uxtab16_ror8(a13, d0);
            e += N;
        }
        m0 += a02 & 0xFFFFu;
        m2 += a02 >> 16;
        m1 += a13 & 0xFFFFu;
        m3 += a13 >> 16;
    }
    m[0] = m0;
    m[1] = m1;
    m[2] = m2;
    m[3] = m3;
}
#endif

#if !(defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP) && defined(__thumb__)
/* ARMv6-M: 4 structures (one word of each of e and y per position, both 4-aligned) at a
 * time.  Per lane k: the y lane shifted to the top byte (t = y << (24 - 8k)) compared
 * unsigned with thr = (yz + 1) << 24 (t >= thr: y > yz, whatever the lower bytes); a masked
 * lane costs 4 cycles, a kept one |e - z| by sign mask (t = e_k - z, s = t >> 31,
 * (t + s) ^ s).  Lanes 0 and 2 go to the halves of one accumulator (lane 2 shifted by 16),
 * lanes 1 and 3 to another: at most 256 positions per call (256 * 255 fits 16 bits).
 * Registers: r0 = e, r1 = y - e, r2/r3 the e/y words, r4/r5 temporaries, r6/r7 the
 * accumulators, r8 = N, r9 = end, r10 = thr, r11 = -z (high registers for ADD/CMP). */
typedef struct {
    const uint8_t *e;
    int32_t dy;
    const uint8_t *end;
    int32_t N;
    uint32_t thr;
    int32_t negz;
    uint32_t a02, a13;
} sel_m0_t;

void sel_mag4_m0(sel_m0_t *a);
#define SEL_M0_TAIL                                                                       \
    "add    r4, r11\n\t"                                                                  \
    "asrs   r5, r4, #31\n\t"                                                              \
    "adds   r4, r4, r5\n\t"                                                               \
    "eors   r4, r5\n\t"
__asm__(".pushsection .text.sel_mag4_m0,\"ax\",%progbits\n\t"
        ".syntax unified\n\t"
        ".thumb\n\t"
        ".p2align 2\n\t"
        ".global sel_mag4_m0\n\t"
        ".hidden sel_mag4_m0\n\t"
        ".type sel_mag4_m0, %function\n\t"
        ".thumb_func\n"
        "sel_mag4_m0:\n\t"
        "push   {r4, r5, r6, r7, lr}\n\t"
        "mov    r4, r8\n\t"
        "mov    r5, r9\n\t"
        "mov    r6, r10\n\t"
        "mov    r7, r11\n\t"
        "push   {r4, r5, r6, r7}\n\t"
        "push   {r0}\n\t"
        "ldr    r1, [r0, #4]\n\t"  /* dy */
        "ldr    r2, [r0, #8]\n\t"  /* end */
        "mov    r9, r2\n\t"
        "ldr    r2, [r0, #12]\n\t" /* N */
        "mov    r8, r2\n\t"
        "ldr    r2, [r0, #16]\n\t" /* thr */
        "mov    r10, r2\n\t"
        "ldr    r2, [r0, #20]\n\t" /* -z */
        "mov    r11, r2\n\t"
        "ldr    r0, [r0, #0]\n\t"  /* e */
        "movs   r6, #0\n\t"
        "movs   r7, #0\n"
        "1:\n\t"
        "ldr    r2, [r0]\n\t"
        "ldr    r3, [r0, r1]\n\t"
        "lsls   r4, r3, #24\n\t" /* lane 0 */
        "cmp    r4, r10\n\t"
        "bcc    2f\n\t"
        "uxtb   r4, r2\n\t" SEL_M0_TAIL "adds   r6, r6, r4\n"
        "2:\n\t"
        "lsls   r4, r3, #16\n\t" /* lane 1 */
        "cmp    r4, r10\n\t"
        "bcc    3f\n\t"
        "lsls   r4, r2, #16\n\t"
        "lsrs   r4, r4, #24\n\t" SEL_M0_TAIL "adds   r7, r7, r4\n"
        "3:\n\t"
        "lsls   r4, r3, #8\n\t" /* lane 2 */
        "cmp    r4, r10\n\t"
        "bcc    4f\n\t"
        "lsls   r4, r2, #8\n\t"
        "lsrs   r4, r4, #24\n\t" SEL_M0_TAIL "lsls   r4, r4, #16\n\t"
        "adds   r6, r6, r4\n"
        "4:\n\t"
        "cmp    r3, r10\n\t" /* lane 3 */
        "bcc    5f\n\t"
        "lsrs   r4, r2, #24\n\t" SEL_M0_TAIL "lsls   r4, r4, #16\n\t"
        "adds   r7, r7, r4\n"
        "5:\n\t"
        "add    r0, r8\n\t"
        "cmp    r0, r9\n\t"
        "bne    1b\n\t"
        "pop    {r0}\n\t"
        "str    r6, [r0, #24]\n\t"
        "str    r7, [r0, #28]\n\t"
        "pop    {r4, r5, r6, r7}\n\t"
        "mov    r8, r4\n\t"
        "mov    r9, r5\n\t"
        "mov    r10, r6\n\t"
        "mov    r11, r7\n\t"
        "pop    {r4, r5, r6, r7, pc}\n\t"
        ".size sel_mag4_m0, . - sel_mag4_m0\n\t"
#ifndef __clang__
        ".syntax divided\n\t" /* gcc's own Thumb-1 output follows */
#endif
        ".popsection");

/* m[0..3] += the magnitudes of structures c .. c+3 (masked by y), 256 positions a call. */
static __attribute__((noinline)) void mag4_m0(const uint8_t *e, const uint8_t *y, int32_t N,
                                              int32_t P, int32_t z, int32_t yz, uint32_t *m)
{
    sel_m0_t a;
    a.dy = (int32_t)(y - e);
    a.N = N;
    a.thr = (uint32_t)(yz + 1) << 24;
    a.negz = -z;
    uint32_t m0 = 0, m1 = 0, m2 = 0, m3 = 0;
    for (int32_t p0 = 0; p0 < P; p0 += 256) {
        const int32_t n = P - p0 < 256 ? P - p0 : 256;
        a.e = e + p0 * N;
        a.end = a.e + n * N;
        sel_mag4_m0(&a);
        m0 += a.a02 & 0xFFFFu;
        m2 += a.a02 >> 16;
        m1 += a.a13 & 0xFFFFu;
        m3 += a.a13 >> 16;
    }
    m[0] = m0;
    m[1] = m1;
    m[2] = m2;
    m[3] = m3;
}
#endif

/* One structure's magnitude, byte by byte (the channels the word paths leave); a function
 * of its own so that ARMv6-M keeps the loop's values in its 8 low registers. */
static __attribute__((noinline)) uint32_t column(const uint8_t *ep, const uint8_t *yp,
                                                 int32_t N, int32_t P, int32_t z, int32_t yz)
{
    uint32_t m = 0;
    const uint8_t *const end = ep + N * P;
    if (yp) {
        for (; ep < end; ep += N, yp += N) {
            if ((int32_t)*yp > yz) {
                const int32_t d = (int32_t)*ep - z;
                m += (uint32_t)(d < 0 ? -d : d);
            }
        }
    } else {
        for (; ep < end; ep += N) {
            const int32_t d = (int32_t)*ep - z;
            m += (uint32_t)(d < 0 ? -d : d);
        }
    }
    return m;
}

/* mag[c] = sum_p |e[p][c] - z| over the positions where y[p][c] > yz (every position when
 * y is NULL); returns the sum over c (mod 2^32). */
static uint32_t magnitudes(const uint8_t *e, const fqt_select_t *sel, uint32_t *mag)
{
    const int32_t N = sel->n_struct, P = sel->n_pix, z = sel->er->zero;
    const uint8_t *y = sel->y;
    const int32_t yz = y ? sel->yr->zero : -1;
    int32_t c = 0;
    if (yz >= 255) { /* no y exceeds 255: every error is masked */
        for (; c < N; c++) {
            mag[c] = 0;
        }
        return 0;
    }
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    const uint32_t z4 = ((uint32_t)z & 0xFFu) * 0x01010101u;
    const uint32_t yz4 = ((uint32_t)(yz + 1) & 0xFFu) * 0x01010101u;
    for (; c + 4 <= N; c += 4) {
        if (y) {
            mag4(e + c, y + c, N, P, z4, yz4, 1, mag + c);
        } else {
            mag4(e + c, 0, N, P, z4, yz4, 0, mag + c);
        }
    }
#elif defined(__thumb__)
    /* y > yz needs yz < 255 (above); P > 0 for the loop's first pass */
    if (y && yz >= 0 && P > 0 && (((uintptr_t)e | (uintptr_t)y | (uint32_t)N) & 3u) == 0) {
        for (; c + 4 <= N; c += 4) {
            mag4_m0(e + c, y + c, N, P, z, yz, mag + c);
        }
    }
#endif
    for (; c < N; c++) {
        mag[c] = column(e + c, y ? y + c : 0, N, P, z, yz);
    }
    uint32_t total = 0;
    for (c = 0; c < N; c++) {
        total += mag[c];
    }
    return total;
}

/* Structure a ranks below structure b: a smaller magnitude, or the same and a higher index. */
static inline int worse(const uint32_t *mag, uint32_t a, uint32_t b)
{
    return mag[a] < mag[b] || (mag[a] == mag[b] && a > b);
}

/* Restore the heap property (the worst structure on top) below position i of h[0 .. n-1]. */
static void sift_down(uint16_t *h, int32_t n, int32_t i, const uint32_t *mag)
{
    const uint16_t v = h[i];
    for (;;) {
        int32_t c = 2 * i + 1;
        if (c >= n) {
            break;
        }
        if (c + 1 < n && worse(mag, h[c + 1], h[c])) {
            c++;
        }
        if (!worse(mag, h[c], v)) {
            break;
        }
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

FQT_API void fqt_select_topk(const uint8_t *e, fqt_select_t *sel)
{
    const int32_t N = sel->n_struct, P = sel->n_pix;
    uint32_t *mag = sel->mag;
    uint16_t *kept = sel->kept;
    uint32_t total = magnitudes(e, sel, mag);
    float eps = sel->eps;
    if (sel->eps_mode == 0) {
        float mean = (float)(int32_t)total;
        float cnt = (float)(N * P);
        mean = mean / cnt;
        if (mean > sel->max_mean) {
            sel->max_mean = mean;
        }
        eps = sel->max_mean > 0.0f ? mean / sel->max_mean : 0.0f;
        sel->eps = eps;
    }
    if (eps < 0.0f) {
        eps = 0.0f - eps;
    }
    float t = sel->lambda_max - sel->lambda_min;
    t = eps * t;
    t = sel->lambda_min + t;
    if (!(t <= 1.0f)) { /* also NaN (a diverged loss): keep every channel */
        t = 1.0f;
    }
    t = t * (float)N;
    int32_t k = (int32_t)t;
    if (k < 1) {
        k = 1;
    }
    if (k > N) {
        k = N;
    }
    sel->k = k;
    if (k == N) {
        for (int32_t c = 0; c < N; c++) {
            kept[c] = (uint16_t)c;
        }
    } else {
        /* the k best seen so far in a heap with the worst on top; a later structure enters
           only with a strictly larger magnitude (on a tie its higher index ranks it below) */
        for (int32_t c = 0; c < k; c++) {
            kept[c] = (uint16_t)c;
        }
        for (int32_t i = k / 2 - 1; i >= 0; i--) {
            sift_down(kept, k, i, mag);
        }
        for (int32_t c = k; c < N; c++) {
            if (mag[c] > mag[kept[0]]) {
                kept[0] = (uint16_t)c;
                sift_down(kept, k, 0, mag);
            }
        }
        /* ascending order: mark the kept magnitudes' top bit (m_c < 2^31), then collect */
        for (int32_t j = 0; j < k; j++) {
            mag[kept[j]] |= 0x80000000u;
        }
        int32_t n = 0;
        for (int32_t c = 0; c < N; c++) {
            if (mag[c] & 0x80000000u) {
                mag[c] &= 0x7FFFFFFFu;
                kept[n++] = (uint16_t)c;
            }
        }
    }
    if (sel->touched) {
        for (int32_t j = 0; j < k; j++) {
            sel->touched[kept[j]] = 1;
        }
    }
}

FQT_API void fqt_loss_eps(const fqt_loss_t *loss, float *max_loss, fqt_select_t *sel)
{
    const float l = loss->loss;
    if (l > *max_loss) {
        *max_loss = l;
    }
    sel->eps = *max_loss > 0.0f ? l / *max_loss : 0.0f;
}
