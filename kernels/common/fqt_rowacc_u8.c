/* acc[i] += scale * (row[i] - row_zero): the inner loop of every backward kernel. */
#include "fqt.h"

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>
#endif

FQT_API void fqt_rowacc_u8(int32_t *acc, const uint8_t *row, int32_t row_zero, int32_t scale,
                           int32_t n)
{
    int32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    /* DSP path: 4 bytes per load, widened with UXTB16, zero point subtracted lane-wise
     * with SSUB16; each signed 16-bit lane times scale (exact, |.| < 2^16). */
    const uint32_t z2 = ((uint32_t)row_zero & 0xFFFFu) * 0x00010001u;
    for (; i + 4 <= n; i += 4) {
        uint32_t r4;
        __builtin_memcpy(&r4, row + i, 4);
        int32_t r02 = (int32_t)__ssub16(__uxtb16(r4), z2);
        int32_t r13 = (int32_t)__ssub16(__uxtb16((r4 >> 8) | (r4 << 24)), z2);
        acc[i] += scale * (int16_t)r02;
        acc[i + 1] += scale * (int16_t)r13;
        acc[i + 2] += scale * (r02 >> 16);
        acc[i + 3] += scale * (r13 >> 16);
    }
#endif
    for (; i < n; i++) {
        acc[i] += scale * ((int32_t)row[i] - row_zero);
    }
}
