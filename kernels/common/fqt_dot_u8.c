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
    /* DSP path: 4 bytes per load, widened to two int16 pairs, zero points subtracted
     * lane-wise, two SMLADs.  (a - a_zero) and (b - b_zero) lie in [-255, 255], so every
     * lane product and the int32 sum are exact: identical to the generic path. */
    const uint32_t az2 = ((uint32_t)a_zero & 0xFFFFu) * 0x00010001u;
    const uint32_t bz2 = ((uint32_t)b_zero & 0xFFFFu) * 0x00010001u;
    for (; i + 4 <= n; i += 4) {
        uint32_t a4 = load_u32(a + i);
        uint32_t b4 = load_u32(b + i);
        uint32_t a02 = __ssub16(__uxtb16(a4), az2);
        uint32_t a13 = __ssub16(__uxtb16(ror8(a4)), az2);
        uint32_t b02 = __ssub16(__uxtb16(b4), bz2);
        uint32_t b13 = __ssub16(__uxtb16(ror8(b4)), bz2);
        acc = __smlad(a02, b02, acc);
        acc = __smlad(a13, b13, acc);
    }
#endif
    for (; i < n; i++) {
        acc += ((int32_t)a[i] - a_zero) * ((int32_t)b[i] - b_zero);
    }
    return acc;
}
