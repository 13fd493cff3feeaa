/*
 * fqt_copy.c - a copy of an error tensor where a residual add hands its error to an input
 * that masks its error in place (an activation's mask, partial updates): the other input
 * must keep the unmasked error.  Word copies when both ends are aligned, bytes otherwise.
 */
#include "fqt.h"

FQT_API void fqt_copy_u8(const uint8_t *src, uint8_t *dst, int32_t n)
{
    int32_t i = 0;
    if ((((uintptr_t)src | (uintptr_t)dst) & 3u) == 0) {
        const uint32_t *s = (const uint32_t *)(const void *)src;
        uint32_t *d = (uint32_t *)(void *)dst;
        for (; i + 4 <= n; i += 4)
            *d++ = *s++;
    }
    for (; i < n; i++)
        dst[i] = src[i];
}
