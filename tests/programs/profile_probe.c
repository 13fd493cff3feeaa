/* A known program for the profiler tests: almost all cycles are in hot()'s loop. */
#include <stdint.h>

__attribute__((used, noinline)) uint32_t hot(uint32_t n)
{
    volatile uint32_t s = 0;
    for (uint32_t i = 0; i < n; i++) {
        s = s + i * 3u; /* HOT_LINE */
    }
    return s;
}

__attribute__((used, noinline)) uint32_t cold(uint32_t n)
{
    return n + 1u; /* COLD_LINE */
}

__attribute__((used, noinline)) uint32_t probe_main(uint32_t n)
{
    return hot(n) + cold(n);
}
