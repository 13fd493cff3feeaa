/* Integer-only requantization and the element noise hash (see fqt.h). */
#include "fqt.h"

FQT_API int32_t fqt_requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t rounding,
                               uint32_t noise)
{
    int64_t prod = (int64_t)acc * (int64_t)multiplier;
    int32_t total = 31 - shift; /* 1 .. 62 */
    if (rounding == FQT_ROUND_NEAREST) {
        prod += (int64_t)1 << (total - 1);
    } else if (rounding == FQT_ROUND_STOCHASTIC) {
        prod += total <= 32 ? (int64_t)(noise >> (32 - total)) : (int64_t)noise << (total - 32);
    }
    return (int32_t)(prod >> total); /* arithmetic shift: floor */
}

FQT_API uint32_t fqt_hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}
