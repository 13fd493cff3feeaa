/* Zero-point-corrected uint8 dot product, the inner loop of the FC and conv kernels. */
#include "fqt.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>

static inline uint32_t load_u32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4); /* unaligned LDR: allowed on ARMv7-M */
    return v;
}

static inline uint32_t ror8(uint32_t v)
{
    return (v >> 8) | (v << 24); /* one ROR */
}
#endif

FQT_API int32_t fqt_dot_u8(const uint8_t *a, int32_t a_zero, const uint8_t *b, int32_t b_zero,
                           int32_t n)
{
    int32_t acc = 0;
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    /* DSP path, zero-point algebra: sum (a - za)(b - zb) = sum ab - zb sum a - za sum b
     * + n za zb.  Per 4 bytes: the raw bytes widened to two uint16 pairs (UXTB16) and
     * multiplied by two SMLADs, the byte sums by two USADA8s; no per-lane zero-point
     * subtraction (the profiler's top hot spot on the M4 was this loop).  Lane products are
     * at most 255 * 255, and the identity holds modulo 2^32, so the int32 result equals the
     * generic path's bit for bit. */
    int32_t sab = 0;
    uint32_t sa = 0, sb = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t a4 = load_u32(a + i);
        uint32_t b4 = load_u32(b + i);
        sab = __smlad(__uxtb16(a4), __uxtb16(b4), sab);
        sab = __smlad(__uxtb16(ror8(a4)), __uxtb16(ror8(b4)), sab);
        sa = __usada8(a4, 0, sa);
        sb = __usada8(b4, 0, sb);
    }
    acc = (int32_t)((uint32_t)sab - (uint32_t)b_zero * sa - (uint32_t)a_zero * sb +
                    (uint32_t)i * (uint32_t)a_zero * (uint32_t)b_zero);
#endif
    for (; i < n; i++) {
        acc += ((int32_t)a[i] - a_zero) * ((int32_t)b[i] - b_zero);
    }
    return acc;
}
