/* Integer-only requantization (see fqt.h). */
#include "fqt.h"

FQT_API int32_t fqt_requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t rounding)
{
    int64_t prod = (int64_t)acc * (int64_t)multiplier;
    int32_t total = 31 - shift; /* 1 .. 62 */
    if (rounding == FQT_ROUND_NEAREST) {
        prod += (int64_t)1 << (total - 1);
    }
    return (int32_t)(prod >> total); /* arithmetic shift: floor */
}
