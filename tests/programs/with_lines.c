/* A C probe with DWARF line info: faults must name this file and line. */
#include <stdint.h>

__attribute__((used, noinline)) uint32_t load_through(const volatile uint32_t *p)
{
    uint32_t v = *p; /* LOAD_LINE */
    return v + 1u;
}

__attribute__((used, noinline)) uint32_t add3(uint32_t a, uint32_t b, uint32_t c)
{
    return a + b + c;
}
