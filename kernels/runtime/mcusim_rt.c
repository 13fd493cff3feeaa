/*
 * A tiny freestanding runtime: the few libc functions compilers may emit calls to
 * (struct copies, zero-initialisation).  No other libc is linked.
 */
#include <stddef.h>
#include <stdint.h>

#if defined(__clang__)
#define RT_API __attribute__((used, retain, weak))
#else
#define RT_API __attribute__((used, weak))
#endif

RT_API void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) {
        *d++ = *s++;
    }
    return dst;
}

RT_API void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--) {
            *d++ = *s++;
        }
    } else {
        while (n--) {
            d[n] = s[n];
        }
    }
    return dst;
}

RT_API void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) {
        *d++ = (uint8_t)c;
    }
    return dst;
}

/* ELF entry point of the kernel images.  mcusim calls kernels directly, so nothing runs
 * this; it only gives the linker an entry symbol (a real firmware's reset handler). */
#if defined(__clang__)
__attribute__((used, retain, noreturn)) void _start(void)
#else
__attribute__((used, noreturn)) void _start(void)
#endif
{
    for (;;) {
    }
}
