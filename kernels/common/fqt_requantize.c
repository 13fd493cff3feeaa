/* Integer-only requantization and the element noise hash (see fqt.h). */
#include "common/fqt_internal.h"

FQT_API int32_t fqt_requantize(int32_t acc, int32_t multiplier, int32_t shift, int32_t rounding,
                               uint32_t noise)
{
    return fqt_requantize_inl(acc, multiplier, shift, rounding, noise);
}

FQT_API uint32_t fqt_hash32(uint32_t x)
{
    return fqt_hash32_inl(x);
}
