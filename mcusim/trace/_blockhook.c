/*
 * Native Unicorn block hook: counts executions per basic block and per edge (previous
 * block -> this block, i.e. which way each block was left), and stops the emulator when
 * the executed code bytes pass a budget.  Registered through Unicorn's own uc_hook_add
 * (via ctypes on the Python binding's engine handle), so no Python runs per block.
 *
 * Built by `pip install` as an (optional) extension module; mcusim.trace.native loads it
 * with ctypes.  The Python module object itself exposes nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#define EXPORT __declspec(dllexport)
#else
#define EXPORT __attribute__((visibility("default")))
#endif

typedef int (*emu_stop_fn)(void *uc);

typedef struct {
    uint64_t a;     /* block: address;      edge: from-block address */
    uint64_t b;     /* block: size;         edge: to-block address   */
    uint64_t count; /* 0 = empty slot */
} entry_t;

typedef struct {
    entry_t *slots;
    size_t cap; /* power of two */
    size_t used;
} table_t;

typedef struct {
    table_t blocks;
    table_t edges;
    uint64_t prev;        /* previous block address, UINT64_MAX at the start of a run */
    uint64_t bytes;       /* code bytes of all executed blocks */
    uint64_t executions;  /* blocks executed */
    uint64_t byte_budget; /* stop before a block that would pass this (0 = no budget) */
    uint64_t pending_addr; /* the block the hook stopped in front of (not counted) */
    uint64_t pending_size;
    int stopped;
    int oom;
    emu_stop_fn emu_stop;
} counter_t;

static int table_init(table_t *t, size_t cap)
{
    t->slots = calloc(cap, sizeof(entry_t));
    t->cap = cap;
    t->used = 0;
    return t->slots != NULL;
}

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static int table_grow(table_t *t);

static inline int table_add(table_t *t, uint64_t a, uint64_t b)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)mix(a, b) & mask;
    for (;;) {
        entry_t *e = &t->slots[i];
        if (e->count == 0) {
            if ((t->used + 1) * 4 > t->cap * 3) { /* keep the load factor under 3/4 */
                if (!table_grow(t)) {
                    return 0;
                }
                return table_add(t, a, b);
            }
            e->a = a;
            e->b = b;
            e->count = 1;
            t->used++;
            return 1;
        }
        if (e->a == a && e->b == b) {
            e->count++;
            return 1;
        }
        i = (i + 1) & mask;
    }
}

static int table_grow(table_t *t)
{
    table_t bigger;
    if (!table_init(&bigger, t->cap * 2)) {
        return 0;
    }
    for (size_t i = 0; i < t->cap; i++) {
        entry_t *e = &t->slots[i];
        if (e->count) {
            size_t mask = bigger.cap - 1;
            size_t j = (size_t)mix(e->a, e->b) & mask;
            while (bigger.slots[j].count) {
                j = (j + 1) & mask;
            }
            bigger.slots[j] = *e;
            bigger.used++;
        }
    }
    free(t->slots);
    *t = bigger;
    return 1;
}

static void table_clear(table_t *t)
{
    memset(t->slots, 0, t->cap * sizeof(entry_t));
    t->used = 0;
}

/* The UC_HOOK_BLOCK callback: uc_cb_hookcode_t. */
EXPORT void mcusim_block_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    counter_t *c = (counter_t *)user_data;
    if (c->stopped) {
        return;
    }
    if (c->byte_budget && c->bytes + size > c->byte_budget) {
        /* Unicorn stops before this block runs: leave it uncounted, the caller resumes
         * here or reports the budget exhausted. */
        c->stopped = 1;
        c->pending_addr = address;
        c->pending_size = size;
        c->emu_stop(uc);
        return;
    }
    if (!table_add(&c->blocks, address, size) || !table_add(&c->edges, c->prev, address)) {
        c->oom = 1;
        c->stopped = 1;
        c->emu_stop(uc);
        return;
    }
    c->prev = address;
    c->bytes += size;
    c->executions++;
}

EXPORT counter_t *mcusim_counter_new(void *emu_stop)
{
    counter_t *c = calloc(1, sizeof(counter_t));
    if (!c) {
        return NULL;
    }
    if (!table_init(&c->blocks, 1024) || !table_init(&c->edges, 2048)) {
        free(c->blocks.slots);
        free(c);
        return NULL;
    }
    c->emu_stop = (emu_stop_fn)emu_stop;
    c->prev = UINT64_MAX;
    return c;
}

EXPORT void mcusim_counter_free(counter_t *c)
{
    if (c) {
        free(c->blocks.slots);
        free(c->edges.slots);
        free(c);
    }
}

/* Start a fresh count (a new call). */
EXPORT void mcusim_counter_reset(counter_t *c)
{
    table_clear(&c->blocks);
    table_clear(&c->edges);
    c->prev = UINT64_MAX;
    c->bytes = 0;
    c->executions = 0;
    c->stopped = 0;
    c->oom = 0;
}

/* Arm the budget for the next emu_start (cumulative bytes; 0 = none). */
EXPORT void mcusim_counter_arm(counter_t *c, uint64_t byte_budget)
{
    c->byte_budget = byte_budget;
    c->stopped = 0;
}

EXPORT uint64_t mcusim_counter_bytes(const counter_t *c) { return c->bytes; }
EXPORT uint64_t mcusim_counter_executions(const counter_t *c) { return c->executions; }
EXPORT int mcusim_counter_stopped(const counter_t *c) { return c->stopped; }
EXPORT uint64_t mcusim_counter_pending_addr(const counter_t *c) { return c->pending_addr; }
EXPORT uint64_t mcusim_counter_pending_size(const counter_t *c) { return c->pending_size; }
EXPORT int mcusim_counter_oom(const counter_t *c) { return c->oom; }
EXPORT size_t mcusim_counter_nblocks(const counter_t *c) { return c->blocks.used; }
EXPORT size_t mcusim_counter_nedges(const counter_t *c) { return c->edges.used; }

/* Copy the tables out: three arrays of n entries each; returns the number written. */
static size_t dump(const table_t *t, uint64_t *a, uint64_t *b, uint64_t *count, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < t->cap && k < n; i++) {
        const entry_t *e = &t->slots[i];
        if (e->count) {
            a[k] = e->a;
            b[k] = e->b;
            count[k] = e->count;
            k++;
        }
    }
    return k;
}

EXPORT size_t mcusim_counter_blocks(const counter_t *c, uint64_t *addr, uint64_t *size,
                                    uint64_t *count, size_t n)
{
    return dump(&c->blocks, addr, size, count, n);
}

EXPORT size_t mcusim_counter_edges(const counter_t *c, uint64_t *from, uint64_t *to,
                                   uint64_t *count, size_t n)
{
    return dump(&c->edges, from, to, count, n);
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_blockhook",
    "Native Unicorn block/edge counter (used through ctypes by mcusim.trace.native).", -1, NULL,
};

PyMODINIT_FUNC PyInit__blockhook(void)
{
    return PyModule_Create(&module);
}
