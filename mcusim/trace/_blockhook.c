/*
 * Native Unicorn hooks for mcusim's tracer.  No Python runs while the emulator does.
 *
 *  - mcusim_block_hook (UC_HOOK_BLOCK): counts executions per basic block and per edge
 *    (previous block -> this block, i.e. which way each block was left), runs the
 *    instruction-fetch side of the flash cache model over the lines the block spans, and
 *    stops the emulator when the executed code bytes pass a budget.
 *  - mcusim_mem_hook (UC_HOOK_MEM_READ, registered only over the flash range, only when
 *    flash data reads are modelled): the address of each executed load from flash, through
 *    the data side of the flash cache model.
 *  - The IT-state guard in mcusim_block_hook, armed with that memory hook.  Unicorn 2.1.4
 *    restores the CPU state of an instruction whose access fires a memory hook, which sets
 *    the IT state of a load inside an IT block; when the IT block ends in the same
 *    translation block nothing clears it again, and the next block is looked up and
 *    translated as if it were inside an IT block: instructions skipped or mis-executed
 *    (upstream issue 2309, unicorn-notes.md).  A translation block legitimately starts with
 *    IT state only when the previous block ended inside an IT block and falls through to
 *    it (the translator then writes the state itself).  So at every block start: IT state
 *    set while the previous block did not end inside an IT block = stale: the guard clears
 *    it and restarts the block (writing the PC makes Unicorn leave the wrongly translated
 *    block before any of its instructions runs); the block is counted when it starts again.
 *  - mcusim_divide_hook (UC_HOOK_CODE, registered on SDIV/UDIV addresses only): histogram
 *    of the operand magnitudes that decide the divider's early termination.
 *  - The branch predictor, in mcusim_block_hook: per branch (keyed by the address where its
 *    block ends) a 2-bit saturating direction counter and the last taken target, kept
 *    across calls (flushed with the caches); each block counts the executions whose exit
 *    direction its counter got wrong and the taken exits whose target changed.
 *  - Access plans (mcusim.trace.access), in mcusim_block_hook: when a block first runs, a
 *    planner callback (Python, once per block and engine) says how its loads/stores'
 *    addresses follow from a few registers at block entry; at every execution the hook
 *    reads those registers and counts per access: misaligned by a halfword, by a byte, and
 *    in the same 32-bit bank as the access before it.  No memory hook is involved.
 *    A followed load into a RAM range behind the M7's D-cache (AXI SRAM, OCRAM...) also
 *    goes through a simulated D-cache; its misses are charged to the block, each at its
 *    range's cost.
 *
 * Every hook is registered through Unicorn's own uc_hook_add (via ctypes on the Python
 * binding's engine handle).  mcusim.trace.python_hook implements the same counts in Python;
 * tests check that both agree exactly.
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
typedef int (*reg_read_fn)(void *uc, int regid, void *value);
typedef int (*reg_write_fn)(void *uc, int regid, const void *value);

#define NO_LINE UINT64_MAX
#define MEMO 1024
#define DIV_BUCKETS 34 /* 0: an operand is 0; 1: bits(n) < bits(d); 2 + bits(n) - bits(d) */

/* ------------------------------------------------------------------ hash tables */

typedef struct block {
    uint64_t addr;  /* block address */
    uint64_t size;  /* block size in bytes */
    uint64_t count; /* 0 = empty slot */
    uint64_t succ[2];   /* first two successor block addresses seen */
    uint64_t scount[2]; /* their counts (0 = slot unused) */
    struct block *sptr[2]; /* their entries (NULL = look up; cleared when the table grows) */
    uint64_t epoch;     /* fetch-cache epoch at which all the block's lines hit (0 = none) */
    int kind;           /* call tree: 0 not decoded, 1 plain, 2 ends in a call, 3 in a return */
    int it_tail;        /* 0 not decoded, 1 ends outside an IT block, 2 inside one */
    uint64_t fmiss;     /* fetch-line misses charged to this block */
    uint64_t fpref;     /* fetch lines the accelerator's prefetch supplied to this block */
    uint64_t dmiss;     /* data-line misses of reads made while this block ran */
    struct bpred *bp;   /* the predictor entry of the branch that ends this block */
    uint64_t bp_gen;    /* the predictor table's generation when bp was looked up */
    uint64_t dirmiss;   /* exits whose direction the counter predicted wrong */
    uint64_t tgtmiss;   /* taken exits to another target than the previous taken one */
    uint64_t rmiss;     /* D-cache misses of followed loads into cached RAM */
    uint64_t rcycles;   /* their cost (each at its range's miss cycles) */
    struct plan *plan;  /* its access plan (NULL: none or not yet asked) */
    int planned;        /* 1 once plan has been looked up in this call */
} block_t;

typedef struct {
    uint64_t from, to, count; /* count 0 = empty slot */
} edge_t;

typedef struct {
    block_t *slots;
    size_t cap; /* power of two */
    size_t used;
} blocks_t;

typedef struct {
    edge_t *slots;
    size_t cap;
    size_t used;
} edges_t;

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull + (a << 6) + (a >> 2));
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

static inline size_t block_slot(uint64_t addr, uint64_t size, size_t mask)
{
    return (size_t)((addr * 0x9E3779B97F4A7C15ull + size) >> 20) & mask;
}

static int blocks_init(blocks_t *t, size_t cap)
{
    t->slots = calloc(cap, sizeof(block_t));
    t->cap = cap;
    t->used = 0;
    return t->slots != NULL;
}

static int edges_init(edges_t *t, size_t cap)
{
    t->slots = calloc(cap, sizeof(edge_t));
    t->cap = cap;
    t->used = 0;
    return t->slots != NULL;
}

static int blocks_grow(blocks_t *t)
{
    blocks_t bigger;
    if (!blocks_init(&bigger, t->cap * 2)) {
        return 0;
    }
    size_t mask = bigger.cap - 1;
    for (size_t i = 0; i < t->cap; i++) {
        block_t *e = &t->slots[i];
        if (e->count) {
            size_t j = block_slot(e->addr, e->size, mask);
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

/* The entry of block (addr, size), created with count 0 -> 1 by the caller; NULL = OOM. */
static block_t *blocks_find(blocks_t *t, uint64_t addr, uint64_t size)
{
    for (;;) {
        size_t mask = t->cap - 1;
        size_t i = block_slot(addr, size, mask);
        for (;;) {
            block_t *e = &t->slots[i];
            if (e->count == 0) {
                if ((t->used + 1) * 4 > t->cap * 3) { /* keep the load factor under 3/4 */
                    if (!blocks_grow(t)) {
                        return NULL;
                    }
                    break; /* rehashed: search again */
                }
                memset(e, 0, sizeof(*e));
                e->addr = addr;
                e->size = size;
                t->used++;
                return e;
            }
            if (e->addr == addr && e->size == size) {
                return e;
            }
            i = (i + 1) & mask;
        }
    }
}

static int edges_grow(edges_t *t)
{
    edges_t bigger;
    if (!edges_init(&bigger, t->cap * 2)) {
        return 0;
    }
    size_t mask = bigger.cap - 1;
    for (size_t i = 0; i < t->cap; i++) {
        edge_t *e = &t->slots[i];
        if (e->count) {
            size_t j = (size_t)mix(e->from, e->to) & mask;
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

static int edges_add(edges_t *t, uint64_t from, uint64_t to)
{
    for (;;) {
        size_t mask = t->cap - 1;
        size_t i = (size_t)mix(from, to) & mask;
        for (;;) {
            edge_t *e = &t->slots[i];
            if (e->count == 0) {
                if ((t->used + 1) * 4 > t->cap * 3) {
                    if (!edges_grow(t)) {
                        return 0;
                    }
                    break;
                }
                e->from = from;
                e->to = to;
                e->count = 1;
                t->used++;
                return 1;
            }
            if (e->from == from && e->to == to) {
                e->count++;
                return 1;
            }
            i = (i + 1) & mask;
        }
    }
}

/* ------------------------------------------------------------------ flash cache model */

/*
 * A set-associative cache of lines over [lo, hi) with FIFO (round-robin) replacement: a hit
 * changes nothing, a miss replaces the oldest line of its set.  Two streams use it: 0 =
 * instruction fetch, 1 = data reads (a unified cache is one object used by both streams).
 * With `prefetch`, a fetch miss on the line right after the stream's previous line is
 * counted as prefetched (the accelerator's sequential prefetch), not as a miss.
 *
 * `epoch` changes whenever a line is inserted (or the cache flushed).  A block whose lines
 * all hit at epoch e still hits them all while the epoch is e, so the block hook skips the
 * lookups then (exact, because hits do not change a FIFO cache).
 */
typedef struct {
    uint64_t lo, hi;
    uint32_t shift; /* log2(line bytes) */
    uint32_t nsets; /* power of two */
    uint32_t ways;
    int prefetch;   /* applies to stream 0 only */
    uint64_t *tags; /* nsets * ways: line + 1, 0 = invalid; newest first */
    uint64_t epoch; /* >= 1; changes on every insertion and flush */
    uint64_t last_line[2];
    uint64_t accesses[2], misses[2], prefetched[2];
} cache_t;

static inline void cache_access(cache_t *c, int stream, uint64_t line)
{
    c->accesses[stream]++;
    if (line == c->last_line[stream]) {
        return; /* same line as the stream's last access: still resident */
    }
    uint64_t *set = c->tags + (size_t)(line & (c->nsets - 1)) * c->ways;
    uint64_t tag = line + 1;
    uint32_t w;
    for (w = 0; w < c->ways; w++) {
        if (set[w] == tag) {
            break;
        }
    }
    if (w == c->ways) { /* miss: the oldest way goes */
        if (stream == 0 && c->prefetch && c->last_line[0] != NO_LINE &&
            line == c->last_line[0] + 1) {
            c->prefetched[0]++;
        } else {
            c->misses[stream]++;
        }
        memmove(set + 1, set, (c->ways - 1) * sizeof(uint64_t));
        set[0] = tag;
        c->epoch++;
    }
    c->last_line[stream] = line;
}

static inline void cache_range(cache_t *c, int stream, uint64_t address, uint64_t size)
{
    if (address >= c->hi || address + size <= c->lo) {
        return;
    }
    uint64_t first = address >> c->shift, last = (address + size - 1) >> c->shift;
    for (uint64_t line = first; line <= last; line++) {
        cache_access(c, stream, line);
    }
}

EXPORT cache_t *mcusim_cache_new(uint64_t lo, uint64_t hi, uint32_t shift, uint32_t nsets,
                                 uint32_t ways, int prefetch)
{
    if (nsets == 0 || (nsets & (nsets - 1)) || ways == 0 || shift > 16) {
        return NULL;
    }
    cache_t *c = calloc(1, sizeof(cache_t));
    if (!c) {
        return NULL;
    }
    c->tags = calloc((size_t)nsets * ways, sizeof(uint64_t));
    if (!c->tags) {
        free(c);
        return NULL;
    }
    c->lo = lo;
    c->hi = hi;
    c->shift = shift;
    c->nsets = nsets;
    c->ways = ways;
    c->prefetch = prefetch;
    c->epoch = 1;
    c->last_line[0] = c->last_line[1] = NO_LINE;
    return c;
}

EXPORT void mcusim_cache_free(cache_t *c)
{
    if (c) {
        free(c->tags);
        free(c);
    }
}

/* Invalidate every line (a cold cache). */
EXPORT void mcusim_cache_flush(cache_t *c)
{
    memset(c->tags, 0, (size_t)c->nsets * c->ways * sizeof(uint64_t));
    c->epoch++;
    c->last_line[0] = c->last_line[1] = NO_LINE;
}

/* Zero the statistics (a new call); the contents stay (the cache stays warm). */
EXPORT void mcusim_cache_clear_stats(cache_t *c)
{
    for (int s = 0; s < 2; s++) {
        c->accesses[s] = c->misses[s] = c->prefetched[s] = 0;
    }
}

/* out[0..5] = accesses, misses, prefetched of stream 0, then of stream 1. */
EXPORT void mcusim_cache_stats(const cache_t *c, uint64_t *out)
{
    for (int s = 0; s < 2; s++) {
        out[3 * s] = c->accesses[s];
        out[3 * s + 1] = c->misses[s];
        out[3 * s + 2] = c->prefetched[s];
    }
}

/* ------------------------------------------------------------------ divide sites */

typedef struct {
    void *counter; /* counter_t *, for the register reader */
    int rn, rm;    /* Unicorn register ids of the dividend and the divisor */
    int is_signed;
    uint64_t hist[DIV_BUCKETS];
} divsite_t;

/* ------------------------------------------------------------------ branch predictor */

typedef struct bpred {
    uint64_t end;     /* address where the branch's block ends (0 = empty slot) */
    uint64_t last_to; /* target of its last taken exit (0 = none yet) */
    int state;        /* 2-bit counter: 0, 1 predict not taken; 2, 3 taken */
} bpred_t;

typedef struct {
    bpred_t *slots;
    size_t cap, used;
    uint64_t gen; /* incremented when entries move (growth, flush) */
} bptab_t;

#define BP_INITIAL 1 /* a branch seen the first time: weakly not taken (assumption) */

static bpred_t *bp_find(bptab_t *t, uint64_t end)
{
    if (t->cap == 0 || 2 * (t->used + 1) > t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 256;
        bpred_t *slots = calloc(cap, sizeof(bpred_t));
        if (!slots) {
            return NULL;
        }
        for (size_t i = 0; i < t->cap; i++) {
            if (t->slots[i].end) {
                size_t j = (size_t)mix(t->slots[i].end, 0) & (cap - 1);
                while (slots[j].end) {
                    j = (j + 1) & (cap - 1);
                }
                slots[j] = t->slots[i];
            }
        }
        free(t->slots);
        t->slots = slots;
        t->cap = cap;
        t->gen++;
    }
    size_t i = (size_t)mix(end, 0) & (t->cap - 1);
    while (t->slots[i].end && t->slots[i].end != end) {
        i = (i + 1) & (t->cap - 1);
    }
    if (!t->slots[i].end) {
        t->slots[i].end = end;
        t->slots[i].last_to = 0;
        t->slots[i].state = BP_INITIAL;
        t->used++;
    }
    return &t->slots[i];
}

/* ------------------------------------------------------------------ access plans */

typedef int (*planner_fn)(uint64_t address, uint32_t size, int32_t *out, int32_t cap);

#define PLAN_REGS 8
#define PLAN_WORDS 1024

typedef struct {
    int32_t size, base, index, shift, sign, delta;
} access_t;

typedef struct plan {
    uint64_t addr, size;
    int nregs;
    int regs[PLAN_REGS];
    int naccess;
    int invariant;    /* a self-loop's next iteration repeats the counts (see access.py) */
    int banks;        /* count same_bank (the M7's paired loads) */
    int cached;       /* its last evaluation sent a load through the D-cache: no reuse */
    access_t *access;
    uint64_t *counts; /* 3 per access (half, byte, same bank), this call */
    uint8_t *last;    /* 3 per access: the last execution's increments (0 or 1) */
    uint64_t repeats; /* self-loop executions since `last` was evaluated, not yet added */
} plan_t;

typedef struct {
    plan_t **slots; /* open addressing by (addr, size); NULL = empty */
    size_t cap, used;
} plantab_t;

static plan_t **plan_slot(plantab_t *t, uint64_t addr, uint64_t size)
{
    size_t i = block_slot(addr, size, t->cap - 1);
    while (t->slots[i] && !(t->slots[i]->addr == addr && t->slots[i]->size == size)) {
        i = (i + 1) & (t->cap - 1);
    }
    return &t->slots[i];
}

static int plans_grow(plantab_t *t)
{
    size_t cap = t->cap ? 2 * t->cap : 256;
    plan_t **old = t->slots;
    size_t oldcap = t->cap;
    t->slots = calloc(cap, sizeof(plan_t *));
    if (!t->slots) {
        t->slots = old;
        return 0;
    }
    t->cap = cap;
    for (size_t i = 0; i < oldcap; i++) {
        if (old[i]) {
            *plan_slot(t, old[i]->addr, old[i]->size) = old[i];
        }
    }
    free(old);
    return 1;
}

/* ------------------------------------------------------------------ call tree */

typedef int (*mem_read_fn)(void *uc, uint64_t address, void *bytes, uint64_t size);

#define KIND_PLAIN 1
#define KIND_CALL 2
#define KIND_RETURN 3
#define MAX_DEPTH 256

typedef struct {
    uint32_t parent; /* node id (0 = the root above every call) */
    uint64_t func;   /* entry address of the function */
    uint64_t calls;  /* times entered */
} node_t;

typedef struct {
    uint32_t node;
    uint64_t ret; /* return address (the instruction after the call) */
} frame_t;

typedef struct {
    int enabled;
    mem_read_fn mem_read;
    node_t *nodes;
    size_t nnodes, capnodes;
    edges_t node_index;  /* (parent, func) -> node id + 1 */
    edges_t counts;      /* (node, block address) -> executions */
    edges_t entries;     /* (function entry, 0) -> 1: the image's function symbols */
    frame_t stack[MAX_DEPTH];
    int depth;
} calltree_t;

/* ------------------------------------------------------------------ the counter */

typedef struct {
    blocks_t blocks;
    edges_t edges;        /* successors beyond a block's two inline ones, and START edges */
    block_t *prev;        /* previous block's entry (NULL at the start of a run) */
    uint64_t prev_addr;
    uint64_t prev_size;
    uint64_t bytes;       /* code bytes of all executed blocks */
    uint64_t executions;  /* blocks executed */
    uint64_t byte_budget; /* stop before a block that would pass this */
    uint64_t pending_addr; /* the block the hook stopped in front of (not counted) */
    uint64_t pending_size;
    int stopped;
    int oom;
    emu_stop_fn emu_stop;
    reg_read_fn reg_read;
    block_t *memo[MEMO]; /* direct-mapped by address: entries found recently */
    cache_t *fetch_cache; /* NULL = instruction fetch not modelled */
    cache_t *data_cache;  /* NULL = data reads from flash not modelled */
    divsite_t **sites;
    size_t nsites, capsites;
    calltree_t tree;
    int it_guard;         /* repair a stale IT state at block starts (see the top) */
    reg_write_fn reg_write;
    mem_read_fn mem_read;
    int xpsr_id, pc_id;   /* Unicorn register ids */
    uint64_t repairs;     /* stale IT states repaired (all calls) */
    uint64_t repair_addr; /* block of the last repair, and repairs there in a row */
    int repair_run;
    int it_error;         /* the repair did not take: stopped */
    uint64_t *log;        /* optional data-read log (tests): 3 words per read */
    size_t logcap, logn;  /* in reads */
    bptab_t bp;           /* the branch predictor (kept across calls) */
    int predict;          /* run the predictor (the M7's model uses it) */
    planner_fn planner;   /* NULL = no access plans */
    plantab_t plans;      /* (addr, size) -> plan, kept across calls */
    plan_t **planlist;    /* every plan made, for resets and read-out */
    size_t nplans, capplans;
    int plan_error;       /* the planner failed: stopped */
    cache_t *ram_cache;   /* the D-cache over RAM outside the TCMs (NULL: none) */
    int nranges;
    uint64_t range_lo[8], range_hi[8], range_cost[8];
} counter_t;

/* The entry of block (address, size) through the memo, else the table.  A table growth
 * moves every entry: the memo and the successor pointers are cleared and the previous
 * block's entry is found again.  NULL = out of memory. */
static block_t *lookup(counter_t *c, uint64_t address, uint64_t size)
{
    block_t **slot = &c->memo[(address >> 1) & (MEMO - 1)];
    block_t *cur = *slot;
    if (cur && cur->addr == address && cur->size == size) {
        return cur;
    }
    size_t cap = c->blocks.cap;
    cur = blocks_find(&c->blocks, address, size);
    if (cur && c->blocks.cap != cap) {
        memset(c->memo, 0, sizeof(c->memo));
        for (size_t i = 0; i < c->blocks.cap; i++) {
            c->blocks.slots[i].sptr[0] = c->blocks.slots[i].sptr[1] = NULL;
        }
        if (c->prev) {
            c->prev = blocks_find(&c->blocks, c->prev_addr, c->prev_size);
        }
        slot = &c->memo[(address >> 1) & (MEMO - 1)];
    }
    *slot = cur;
    return cur;
}

/* Record the edge prev -> `to` (not one of prev's known successors). */
static void record_new_edge(counter_t *c, uint64_t to, block_t *cur)
{
    block_t *p = c->prev;
    if (p) {
        for (int k = 0; k < 2; k++) {
            if (p->scount[k] == 0) {
                p->succ[k] = to;
                p->scount[k] = 1;
                p->sptr[k] = cur;
                return;
            }
        }
        if (!edges_add(&c->edges, p->addr, to)) {
            c->oom = 1;
        }
    } else if (!edges_add(&c->edges, UINT64_MAX, to)) {
        c->oom = 1;
    }
}

static uint64_t *edges_find(edges_t *t, uint64_t from, uint64_t to)
{
    size_t mask = t->cap - 1;
    size_t i = (size_t)mix(from, to) & mask;
    for (;;) {
        edge_t *e = &t->slots[i];
        if (e->count == 0) {
            return NULL;
        }
        if (e->from == from && e->to == to) {
            return &e->count;
        }
        i = (i + 1) & mask;
    }
}

/* How a block ends: decoded once from the guest's code (Thumb length decoding). */
static int block_kind(counter_t *c, void *uc, uint64_t address, uint32_t size)
{
    uint8_t buf[1024];
    if (size < 2 || size > sizeof(buf) || c->tree.mem_read(uc, address, buf, size) != 0) {
        return KIND_PLAIN;
    }
    uint32_t off = 0, last = 0;
    while (off + 2 <= size) {
        uint16_t hw = (uint16_t)(buf[off] | buf[off + 1] << 8);
        last = off;
        off += ((hw >> 11) >= 0x1D) ? 4 : 2;
    }
    uint16_t h1 = (uint16_t)(buf[last] | buf[last + 1] << 8);
    uint16_t h2 = last + 4 <= size ? (uint16_t)(buf[last + 2] | buf[last + 3] << 8) : 0;
    if (last + 4 <= size && (h1 >> 11) >= 0x1D) {
        if ((h1 & 0xF800) == 0xF000 && (h2 & 0xD000) == 0xD000) {
            return KIND_CALL; /* BL */
        }
        if (h1 == 0xE8BD && (h2 & 0x8000)) {
            return KIND_RETURN; /* LDMIA.W SP!, {..., PC} */
        }
        if (h1 == 0xF85D && h2 == 0xFB04) {
            return KIND_RETURN; /* LDR.W PC, [SP], #4 */
        }
        return KIND_PLAIN;
    }
    if ((h1 & 0xFF87) == 0x4780) {
        return KIND_CALL; /* BLX Rm */
    }
    if (h1 == 0x4770 || h1 == 0x46F7 || (h1 & 0xFF00) == 0xBD00) {
        return KIND_RETURN; /* BX LR, MOV PC LR, POP {..., PC} */
    }
    return KIND_PLAIN;
}

static uint32_t tree_node(counter_t *c, uint32_t parent, uint64_t func)
{
    calltree_t *t = &c->tree;
    uint64_t *hit = edges_find(&t->node_index, parent, func);
    if (hit) {
        return (uint32_t)(*hit - 1);
    }
    if (t->nnodes == t->capnodes) {
        size_t cap = t->capnodes ? 2 * t->capnodes : 64;
        node_t *grown = realloc(t->nodes, cap * sizeof(node_t));
        if (!grown) {
            c->oom = 1;
            return 0;
        }
        t->nodes = grown;
        t->capnodes = cap;
    }
    uint32_t id = (uint32_t)t->nnodes++;
    t->nodes[id].parent = parent;
    t->nodes[id].func = func;
    t->nodes[id].calls = 0;
    /* id + 1 as the count: edges_add starts at 1, add id more */
    if (!edges_add(&t->node_index, parent, func)) {
        c->oom = 1;
        return id;
    }
    *edges_find(&t->node_index, parent, func) = (uint64_t)id + 1;
    return id;
}

static void tree_push(counter_t *c, uint64_t func, uint64_t ret)
{
    calltree_t *t = &c->tree;
    uint32_t parent = t->depth ? t->stack[t->depth - 1].node : 0;
    uint32_t id = tree_node(c, parent, func);
    t->nodes[id].calls++;
    if (t->depth < MAX_DEPTH) {
        t->stack[t->depth].node = id;
        t->stack[t->depth].ret = ret;
        t->depth++;
    } else {
        t->stack[t->depth - 1].node = id; /* too deep: stay at the last level */
    }
}

static void tree_step(counter_t *c, void *uc, block_t *prev, uint64_t prev_end,
                      block_t *cur, uint64_t address)
{
    calltree_t *t = &c->tree;
    if (cur->kind == 0) {
        cur->kind = block_kind(c, uc, address, (uint32_t)cur->size);
    }
    if (t->depth == 0) {
        tree_push(c, address, UINT64_MAX); /* the called function */
    } else if (prev && address != prev_end) {
        if (prev->kind == KIND_CALL && (t->entries.used == 0 ||
                                        edges_find(&t->entries, address, 0))) {
            /* a BL to a non-entry when the image names its functions is not a call:
               gcc's Thumb-1 far jump inside a function longer than B's +-2 KB reach */
            tree_push(c, address, prev_end);
        } else if (prev->kind == KIND_CALL) {
            /* the far jump: stay in the frame */
        } else if (prev->kind == KIND_RETURN) {
            int d = t->depth;
            while (d > 0 && t->stack[d - 1].ret != address) {
                d--;
            }
            if (d > 0) {
                t->depth = d - 1; /* pop the frame that returns here and all above it */
            }
            if (t->depth == 0) {
                tree_push(c, address, UINT64_MAX);
            }
        } else if (edges_find(&t->entries, address, 0) &&
                   t->nodes[t->stack[t->depth - 1].node].func != address) {
            /* a branch to another function's entry: a tail call, same return address */
            frame_t *top = &t->stack[t->depth - 1];
            uint32_t parent = t->nodes[top->node].parent;
            top->node = tree_node(c, parent, address);
            t->nodes[top->node].calls++;
        }
    }
    if (!edges_add(&t->counts, t->stack[t->depth - 1].node, address)) {
        c->oom = 1;
    }
}

#define IT_BITS 0x0600FC00u /* XPSR IT[1:0] (26:25) and IT[7:2] (15:10) */

/* Does the block end inside an IT block?  Thumb length decoding from the block start; an IT
 * instruction (0xBFxy, mask y != 0) covers 4 - ctz(y) instructions.  Decoded once. */
static int ends_inside_it(counter_t *c, void *uc, block_t *b)
{
    if (b->it_tail == 0) {
        uint8_t buf[4096]; /* a translation block holds at most 512 instructions */
        uint32_t size = (uint32_t)b->size, off = 0, left = 0;
        if (size < 2 || size > sizeof(buf) || c->mem_read(uc, b->addr, buf, size) != 0) {
            b->it_tail = 2; /* unreadable (never for code that ran): never "repair" */
            return 1;
        }
        while (off + 2 <= size) {
            uint16_t hw = (uint16_t)(buf[off] | buf[off + 1] << 8);
            if (left) {
                left--;
            } else if ((hw & 0xFF00) == 0xBF00 && (hw & 0xF)) {
                left = 4 - (uint32_t)__builtin_ctz(hw & 0xF);
            }
            off += ((hw >> 11) >= 0x1D) ? 4 : 2;
        }
        b->it_tail = left ? 2 : 1;
    }
    return b->it_tail == 2;
}

/* The IT-state guard (see the top): 1 = this block was entered with a stale IT state and
 * is restarted with it cleared (do not count it now). */
static int it_stale(counter_t *c, void *uc, uint64_t address)
{
    uint32_t xpsr = 0;
    c->reg_read(uc, c->xpsr_id, &xpsr);
    if (!(xpsr & IT_BITS) || (c->prev && c->prev_addr + c->prev_size == address &&
                              ends_inside_it(c, uc, c->prev))) {
        c->repair_addr = UINT64_MAX;
        return 0;
    }
    if (c->repair_addr == address && ++c->repair_run > 3) {
        c->it_error = 1; /* the repair does not take: stop rather than loop */
        c->stopped = 1;
        c->emu_stop(uc);
        return 1;
    }
    if (c->repair_addr != address) {
        c->repair_addr = address;
        c->repair_run = 1;
    }
    xpsr &= ~IT_BITS;
    uint32_t pc = (uint32_t)address | 1;
    c->reg_write(uc, c->xpsr_id, &xpsr);
    c->reg_write(uc, c->pc_id, &pc); /* Unicorn leaves this block and starts it again */
    c->repairs++;
    return 1;
}

/* The predictor's view of the exit of block p (ending at `end`) to `to`. */
static void predict(counter_t *c, block_t *p, uint64_t end, uint64_t to)
{
    if (!p->bp || p->bp_gen != c->bp.gen) {
        p->bp = bp_find(&c->bp, end);
        if (!p->bp) {
            c->oom = 1;
            return;
        }
        p->bp_gen = c->bp.gen;
    }
    bpred_t *e = p->bp;
    int taken = to != end;
    if ((e->state >= 2) != taken) {
        p->dirmiss++;
    }
    if (taken) {
        if (e->state < 3) {
            e->state++;
        }
        if (e->last_to != to) {
            p->tgtmiss++;
            e->last_to = to;
        }
    } else if (e->state > 0) {
        e->state--;
    }
}

static void plan_free(plan_t *pl)
{
    if (pl) {
        free(pl->access);
        free(pl->counts);
        free(pl->last);
        free(pl);
    }
}

/* The plan of block (address, size): from the table, else made by the planner (NULL: the
 * block has no followed access, or out of memory / planner failure, flagged). */
static plan_t *plan_get(counter_t *c, uint64_t address, uint32_t size)
{
    if (2 * (c->plans.used + 1) > c->plans.cap && !plans_grow(&c->plans)) {
        c->oom = 1;
        return NULL;
    }
    plan_t **slot = plan_slot(&c->plans, address, size);
    if (*slot) {
        return (*slot)->naccess ? *slot : NULL;
    }
    int32_t buf[PLAN_WORDS];
    int n = c->planner(address, size, buf, PLAN_WORDS);
    if (n < 2 || buf[0] < 0 || buf[0] > PLAN_REGS || n < buf[0] + 2) {
        c->plan_error = 1;
        return NULL;
    }
    plan_t *pl = calloc(1, sizeof(plan_t));
    if (!pl) {
        c->oom = 1;
        return NULL;
    }
    pl->addr = address;
    pl->size = size;
    pl->nregs = buf[0];
    for (int i = 0; i < pl->nregs; i++) {
        pl->regs[i] = buf[1 + i];
    }
    int k = 1 + pl->nregs;
    int na = buf[k++];
    pl->invariant = buf[k] & 1;
    pl->banks = (buf[k] >> 1) & 1;
    k++;
    if (na < 0 || n != k + 6 * na) {
        free(pl);
        c->plan_error = 1;
        return NULL;
    }
    pl->naccess = na;
    if (na) {
        pl->access = calloc((size_t)na, sizeof(access_t));
        pl->counts = calloc(3 * (size_t)na, sizeof(uint64_t));
        pl->last = calloc(3 * (size_t)na, 1);
        if (!pl->access || !pl->counts || !pl->last) {
            plan_free(pl);
            c->oom = 1;
            return NULL;
        }
        for (int j = 0; j < na; j++, k += 6) {
            access_t *a = &pl->access[j];
            a->size = buf[k];
            a->base = buf[k + 1];
            a->index = buf[k + 2];
            a->shift = buf[k + 3];
            a->sign = buf[k + 4];
            a->delta = buf[k + 5];
            if (a->base < 0 || a->base >= pl->nregs || a->index >= pl->nregs ||
                a->shift < 0 || a->shift > 31) {
                plan_free(pl);
                c->plan_error = 1;
                return NULL;
            }
        }
    }
    if (c->nplans == c->capplans) {
        size_t cap = c->capplans ? 2 * c->capplans : 256;
        plan_t **grown = realloc(c->planlist, cap * sizeof(*grown));
        if (!grown) {
            plan_free(pl);
            c->oom = 1;
            return NULL;
        }
        c->planlist = grown;
        c->capplans = cap;
    }
    c->planlist[c->nplans++] = pl;
    *slot = pl;
    c->plans.used++;
    return na ? pl : NULL;
}

/* One execution of a block with a plan: its accesses' addresses from the entry registers
 * (mcusim.trace.access.evaluate does the same).  `again`: the block follows itself and
 * its plan is invariant: the previous execution's increments repeat exactly. */
static void plan_fold(plan_t *pl)
{
    if (pl->repeats) {
        for (int j = 0; j < 3 * pl->naccess; j++) {
            pl->counts[j] += pl->repeats * pl->last[j];
        }
        pl->repeats = 0;
    }
}

static void plan_eval(counter_t *c, void *uc, plan_t *pl, int again, block_t *cur)
{
    if (again && pl->invariant && !pl->cached) {
        pl->repeats++; /* folded in before the next evaluation or at read-out */
        return;
    }
    plan_fold(pl);
    uint64_t *n = pl->counts;
    uint8_t *l = pl->last;
    uint32_t v[PLAN_REGS];
    for (int i = 0; i < pl->nregs; i++) {
        v[i] = 0;
        c->reg_read(uc, pl->regs[i], &v[i]);
    }
    uint32_t prev = 0;
    int cached = 0;
    for (int j = 0; j < pl->naccess; j++, n += 3, l += 3) {
        const access_t *a = &pl->access[j];
        uint32_t ea = v[a->base] + (uint32_t)a->delta;
        if (a->index >= 0) {
            uint32_t x = v[a->index] << a->shift;
            ea = a->sign < 0 ? ea - x : ea + x;
        }
        l[0] = (uint8_t)((a->size == 4 && !(ea & 1u) && (ea & 2u)) ||
                         (a->size == 2 && (ea & 1u)));
        l[1] = (uint8_t)(a->size == 4 && (ea & 1u));
        l[2] = (uint8_t)(pl->banks && j > 0 && !((ea ^ prev) & 4u));
        n[0] += l[0];
        n[1] += l[1];
        n[2] += l[2];
        prev = ea;
        if (c->ram_cache) {
            for (int r = 0; r < c->nranges; r++) {
                if (ea >= c->range_lo[r] && ea < c->range_hi[r]) {
                    uint64_t before = c->ram_cache->misses[1];
                    cache_range(c->ram_cache, 1, ea, (uint64_t)a->size);
                    uint64_t m = c->ram_cache->misses[1] - before;
                    cur->rmiss += m;
                    cur->rcycles += m * c->range_cost[r];
                    cached = 1;
                    break;
                }
            }
        }
    }
    pl->cached = cached;
}

/* The UC_HOOK_BLOCK callback: uc_cb_hookcode_t. */
EXPORT void mcusim_block_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    counter_t *c = (counter_t *)user_data;
    if (c->stopped) {
        return;
    }
    if (c->it_guard && it_stale(c, uc, address)) {
        return;
    }
    if (c->bytes + size > c->byte_budget) {
        /* Unicorn stops before this block runs: leave it uncounted, the caller resumes
         * here or reports the budget exhausted. */
        c->stopped = 1;
        c->pending_addr = address;
        c->pending_size = size;
        c->emu_stop(uc);
        return;
    }
    /* Fast path: the block is one of the previous block's two known successors. */
    block_t *p = c->prev;
    block_t *cur = NULL;
    int k = -1;
    if (p) {
        if (p->scount[0] && p->succ[0] == address) {
            k = 0;
        } else if (p->scount[1] && p->succ[1] == address) {
            k = 1;
        }
        if (k >= 0) {
            p->scount[k]++;
            cur = p->sptr[k];
        }
    }
    if (!cur || cur->addr != address || cur->size != size) {
        cur = lookup(c, address, size);
        if (cur) {
            if (k < 0) {
                record_new_edge(c, address, cur);
            } else if (c->prev && c->prev->succ[k] == address) {
                c->prev->sptr[k] = cur;
            }
        } else {
            c->oom = 1;
        }
        if (c->oom) {
            c->stopped = 1;
            c->emu_stop(uc);
            return;
        }
    }
    cur->count++;
    if (c->prev && c->predict) {
        predict(c, c->prev, c->prev_addr + c->prev_size, address);
    }
    if (c->planner) {
        if (!cur->planned) {
            cur->plan = plan_get(c, address, size);
            cur->planned = 1;
            if (c->plan_error || c->oom) {
                c->stopped = 1;
                c->emu_stop(uc);
                return;
            }
        }
        if (cur->plan) {
            plan_eval(c, uc, cur->plan, c->prev == cur, cur);
        }
    }
    if (c->tree.enabled) {
        tree_step(c, uc, c->prev, c->prev ? c->prev_addr + c->prev_size : 0, cur, address);
    }
    c->prev = cur;
    c->prev_addr = address;
    c->prev_size = size;
    c->bytes += size;
    c->executions++;
    cache_t *fc = c->fetch_cache;
    if (fc && address < fc->hi && address + size > fc->lo) {
        if (cur->epoch == fc->epoch) { /* nothing inserted since all its lines hit */
            uint64_t first = address >> fc->shift, last = (address + size - 1) >> fc->shift;
            fc->accesses[0] += last - first + 1;
            fc->last_line[0] = last;
        } else {
            uint64_t before = fc->epoch, misses = fc->misses[0], pref = fc->prefetched[0];
            cache_range(fc, 0, address, size);
            cur->epoch = fc->epoch == before ? before : 0;
            cur->fmiss += fc->misses[0] - misses;
            cur->fpref += fc->prefetched[0] - pref;
        }
    }
}

/* UC_HOOK_MEM_READ callback (uc_cb_hookmem_t), registered over the flash range only. */
EXPORT void mcusim_mem_hook(void *uc, int type, uint64_t address, int size, int64_t value,
                            void *user_data)
{
    (void)uc;
    (void)type;
    (void)value;
    counter_t *c = (counter_t *)user_data;
    if (c->data_cache && !c->stopped) {
        uint64_t n = (uint64_t)(size > 0 ? size : 1);
        if (c->log && c->logn < c->logcap) {
            uint64_t *e = c->log + 3 * c->logn++;
            e[0] = c->prev ? c->prev_addr : UINT64_MAX;
            e[1] = address;
            e[2] = n;
        }
        uint64_t misses = c->data_cache->misses[1];
        cache_range(c->data_cache, 1, address, n);
        if (c->prev) {
            c->prev->dmiss += c->data_cache->misses[1] - misses;
        }
    }
}

/* Arm the IT-state guard (with a memory hook): register ids of XPSR and PC. */
EXPORT void mcusim_counter_set_it_guard(counter_t *c, void *reg_write, void *mem_read,
                                        int xpsr_id, int pc_id)
{
    c->reg_write = (reg_write_fn)reg_write;
    c->mem_read = (mem_read_fn)mem_read;
    c->xpsr_id = xpsr_id;
    c->pc_id = pc_id;
    c->it_guard = 1;
}

EXPORT uint64_t mcusim_counter_it_repairs(const counter_t *c) { return c->repairs; }
EXPORT int mcusim_counter_it_error(const counter_t *c) { return c->it_error; }

/* Log the data reads into buf (cap reads of 3 words: block, address, bytes); NULL = off. */
EXPORT void mcusim_counter_set_log(counter_t *c, uint64_t *buf, size_t cap)
{
    c->log = buf;
    c->logcap = buf ? cap : 0;
    c->logn = 0;
}

EXPORT size_t mcusim_counter_log_used(const counter_t *c) { return c->logn; }

static inline int bits_of(uint32_t v)
{
    return v ? 32 - __builtin_clz(v) : 0;
}

/* UC_HOOK_CODE callback on one SDIV/UDIV: runs before the instruction executes. */
EXPORT void mcusim_divide_hook(void *uc, uint64_t address, uint32_t size, void *user_data)
{
    (void)address;
    (void)size;
    divsite_t *s = (divsite_t *)user_data;
    counter_t *c = (counter_t *)s->counter;
    if (c->stopped) {
        return;
    }
    uint32_t n = 0, d = 0;
    c->reg_read(uc, s->rn, &n);
    c->reg_read(uc, s->rm, &d);
    if (s->is_signed) {
        n = (int32_t)n < 0 ? 0u - n : n; /* |INT32_MIN| = 2^31 as unsigned */
        d = (int32_t)d < 0 ? 0u - d : d;
    }
    int bucket;
    if (n == 0 || d == 0) {
        bucket = 0;
    } else {
        int bn = bits_of(n), bd = bits_of(d);
        bucket = bn < bd ? 1 : 2 + (bn - bd);
    }
    s->hist[bucket]++;
}

EXPORT counter_t *mcusim_counter_new(void *emu_stop, void *reg_read)
{
    counter_t *c = calloc(1, sizeof(counter_t));
    if (!c) {
        return NULL;
    }
    if (!blocks_init(&c->blocks, 1024) || !edges_init(&c->edges, 256)) {
        free(c->blocks.slots);
        free(c);
        return NULL;
    }
    c->emu_stop = (emu_stop_fn)emu_stop;
    c->reg_read = (reg_read_fn)reg_read;
    c->byte_budget = UINT64_MAX;
    return c;
}

EXPORT void mcusim_counter_free(counter_t *c)
{
    if (c) {
        free(c->blocks.slots);
        free(c->edges.slots);
        if (c->data_cache && c->data_cache != c->fetch_cache) {
            mcusim_cache_free(c->data_cache);
        }
        mcusim_cache_free(c->fetch_cache);
        mcusim_cache_free(c->ram_cache);
        for (size_t i = 0; i < c->nsites; i++) {
            free(c->sites[i]);
        }
        free(c->sites);
        free(c->tree.nodes);
        free(c->tree.node_index.slots);
        free(c->tree.counts.slots);
        free(c->tree.entries.slots);
        free(c->bp.slots);
        for (size_t i = 0; i < c->nplans; i++) {
            plan_free(c->planlist[i]);
        }
        free(c->planlist);
        free(c->plans.slots);
        free(c);
    }
}

/* Hand a cache to the counter (it owns it from now on): which 0 = fetch, 1 = data.  The
 * same cache may serve both (unified). */
EXPORT void mcusim_counter_set_cache(counter_t *c, int which, cache_t *cache)
{
    if (which == 0) {
        c->fetch_cache = cache;
    } else {
        c->data_cache = cache;
    }
}

/* A new divide site; returns the pointer to pass as the code hook's user data. */
EXPORT divsite_t *mcusim_counter_add_divide(counter_t *c, int rn, int rm, int is_signed)
{
    if (c->nsites == c->capsites) {
        size_t cap = c->capsites ? 2 * c->capsites : 16;
        divsite_t **grown = realloc(c->sites, cap * sizeof(divsite_t *));
        if (!grown) {
            return NULL;
        }
        c->sites = grown;
        c->capsites = cap;
    }
    divsite_t *s = calloc(1, sizeof(divsite_t));
    if (!s) {
        return NULL;
    }
    s->counter = c;
    s->rn = rn;
    s->rm = rm;
    s->is_signed = is_signed;
    c->sites[c->nsites++] = s;
    return s;
}

/* The histogram of divide site i (DIV_BUCKETS counts). */
EXPORT void mcusim_counter_divide_hist(const counter_t *c, size_t i, uint64_t *out)
{
    memcpy(out, c->sites[i]->hist, sizeof(c->sites[i]->hist));
}

/* Track the call tree from now on (mem_read: uc_mem_read, to decode block ends). */
EXPORT int mcusim_counter_enable_calls(counter_t *c, void *mem_read)
{
    calltree_t *t = &c->tree;
    if (t->enabled) {
        return 1;
    }
    if (!edges_init(&t->node_index, 256) || !edges_init(&t->counts, 1024) ||
        !edges_init(&t->entries, 256)) {
        return 0;
    }
    t->mem_read = (mem_read_fn)mem_read;
    t->capnodes = 64;
    t->nodes = calloc(t->capnodes, sizeof(node_t));
    if (!t->nodes) {
        return 0;
    }
    t->nnodes = 1;
    t->enabled = 1;
    return 1;
}

EXPORT int mcusim_counter_add_entry(counter_t *c, uint64_t address)
{
    return edges_add(&c->tree.entries, address, 0);
}

EXPORT size_t mcusim_counter_nnodes(const counter_t *c) { return c->tree.nnodes; }
EXPORT size_t mcusim_counter_ntreecounts(const counter_t *c) { return c->tree.counts.used; }

/* Nodes: parent id, function entry, calls (node 0 is the root). */
EXPORT size_t mcusim_counter_nodes(const counter_t *c, uint64_t *parent, uint64_t *func,
                                   uint64_t *calls, size_t n)
{
    size_t k = 0;
    for (; k < c->tree.nnodes && k < n; k++) {
        parent[k] = c->tree.nodes[k].parent;
        func[k] = c->tree.nodes[k].func;
        calls[k] = c->tree.nodes[k].calls;
    }
    return k;
}

EXPORT size_t mcusim_counter_tree_counts(const counter_t *c, uint64_t *node, uint64_t *addr,
                                         uint64_t *count, size_t n)
{
    size_t k = 0;
    const edges_t *t = &c->tree.counts;
    for (size_t i = 0; i < t->cap && k < n; i++) {
        if (t->slots[i].count) {
            node[k] = t->slots[i].from;
            addr[k] = t->slots[i].to;
            count[k] = t->slots[i].count;
            k++;
        }
    }
    return k;
}

/* Start a fresh count (a new call).  Cache contents stay; their statistics restart. */
EXPORT void mcusim_counter_reset(counter_t *c)
{
    memset(c->blocks.slots, 0, c->blocks.cap * sizeof(block_t));
    c->blocks.used = 0;
    memset(c->memo, 0, sizeof(c->memo));
    memset(c->edges.slots, 0, c->edges.cap * sizeof(edge_t));
    c->edges.used = 0;
    c->prev = NULL;
    c->bytes = 0;
    c->executions = 0;
    c->stopped = 0;
    c->oom = 0;
    c->logn = 0;
    c->repair_addr = UINT64_MAX;
    c->repair_run = 0;
    for (size_t i = 0; i < c->nsites; i++) {
        memset(c->sites[i]->hist, 0, sizeof(c->sites[i]->hist));
    }
    for (size_t i = 0; i < c->nplans; i++) {
        if (c->planlist[i]->naccess) {
            memset(c->planlist[i]->counts, 0, 3 * (size_t)c->planlist[i]->naccess *
                   sizeof(uint64_t));
            c->planlist[i]->repeats = 0;
        }
    }
    if (c->tree.enabled) {
        c->tree.nnodes = 1; /* node 0: the root */
        memset(c->tree.node_index.slots, 0, c->tree.node_index.cap * sizeof(edge_t));
        c->tree.node_index.used = 0;
        memset(c->tree.counts.slots, 0, c->tree.counts.cap * sizeof(edge_t));
        c->tree.counts.used = 0;
        c->tree.depth = 0;
    }
    if (c->fetch_cache) {
        mcusim_cache_clear_stats(c->fetch_cache);
    }
    if (c->data_cache) {
        mcusim_cache_clear_stats(c->data_cache);
    }
    if (c->ram_cache) {
        mcusim_cache_clear_stats(c->ram_cache);
    }
}

/* Arm the budget for the next emu_start (cumulative bytes; 0 = none). */
EXPORT void mcusim_counter_arm(counter_t *c, uint64_t byte_budget)
{
    c->byte_budget = byte_budget ? byte_budget : UINT64_MAX;
    c->stopped = 0;
}

EXPORT uint64_t mcusim_counter_bytes(const counter_t *c) { return c->bytes; }
EXPORT uint64_t mcusim_counter_executions(const counter_t *c) { return c->executions; }
EXPORT int mcusim_counter_stopped(const counter_t *c) { return c->stopped; }
EXPORT uint64_t mcusim_counter_pending_addr(const counter_t *c) { return c->pending_addr; }
EXPORT uint64_t mcusim_counter_pending_size(const counter_t *c) { return c->pending_size; }
EXPORT int mcusim_counter_oom(const counter_t *c) { return c->oom; }
EXPORT size_t mcusim_counter_nblocks(const counter_t *c) { return c->blocks.used; }

/* An upper bound of the number of edges (inline successors + overflow table). */
EXPORT size_t mcusim_counter_nedges(const counter_t *c) { return 2 * c->blocks.used + c->edges.used; }

EXPORT size_t mcusim_counter_blocks(const counter_t *c, uint64_t *addr, uint64_t *size,
                                    uint64_t *count, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < c->blocks.cap && k < n; i++) {
        const block_t *e = &c->blocks.slots[i];
        if (e->count) {
            addr[k] = e->addr;
            size[k] = e->size;
            count[k] = e->count;
            k++;
        }
    }
    return k;
}


/* The D-cache over RAM outside the TCMs (the counter owns it): `n` ranges [lo, hi) with a
 * miss cost each. */
EXPORT void mcusim_counter_set_ram_cache(counter_t *c, cache_t *cache, int n,
                                         const uint64_t *lo, const uint64_t *hi,
                                         const uint64_t *cost)
{
    c->ram_cache = cache;
    c->nranges = n > 8 ? 8 : n;
    for (int i = 0; i < c->nranges; i++) {
        c->range_lo[i] = lo[i];
        c->range_hi[i] = hi[i];
        c->range_cost[i] = cost[i];
    }
}




/* Forget the predictor's state (a cold start). */
EXPORT void mcusim_counter_flush_predictor(counter_t *c)
{
    free(c->bp.slots);
    c->bp.slots = NULL;
    c->bp.cap = c->bp.used = 0;
    c->bp.gen++;
}

EXPORT void mcusim_counter_enable_predictor(counter_t *c) { c->predict = 1; }

/* The block running now (the last one the hook counted): 1 and its address and size, or 0
 * when none has run in this call. */
EXPORT int mcusim_counter_current(const counter_t *c, uint64_t *addr, uint64_t *size)
{
    if (!c->prev) {
        return 0;
    }
    *addr = c->prev_addr;
    *size = c->prev_size;
    return 1;
}

/* Install the access planner (a C-callable function; see plan_get). */
EXPORT void mcusim_counter_set_planner(counter_t *c, void *planner)
{
    c->planner = (planner_fn)planner;
}

EXPORT int mcusim_counter_plan_error(const counter_t *c) { return c->plan_error; }
EXPORT size_t mcusim_counter_nplans(const counter_t *c) { return c->nplans; }

/* Count words (3 per access) over every plan with accesses. */
EXPORT size_t mcusim_counter_plan_words(const counter_t *c)
{
    size_t w = 0;
    for (size_t i = 0; i < c->nplans; i++) {
        w += 3 * (size_t)c->planlist[i]->naccess;
    }
    return w;
}

/* Every plan with accesses: its block (address, size), its number of accesses, and its
 * counts of the current call appended to `counts` (3 per access).  Returns the number of
 * plans written (room: `n` plans, `cap` count words). */
EXPORT size_t mcusim_counter_plans(counter_t *c, uint64_t *addr, uint64_t *size,
                                   uint64_t *naccess, size_t n, uint64_t *counts,
                                   size_t cap)
{
    size_t k = 0, w = 0;
    for (size_t i = 0; i < c->nplans && k < n; i++) {
        plan_t *pl = c->planlist[i];
        size_t m = 3 * (size_t)pl->naccess;
        if (!m || w + m > cap) {
            continue;
        }
        plan_fold(pl);
        addr[k] = pl->addr;
        size[k] = pl->size;
        naccess[k] = (uint64_t)pl->naccess;
        memcpy(counts + w, pl->counts, m * sizeof(uint64_t));
        w += m;
        k++;
    }
    return k;
}

/* Per-block statistics of the current call, for the blocks where they are not zero:
 * which = 0: fetch-line misses, data-line misses; 1: RAM D-cache misses, their cycles;
 * 2: prefetched fetch lines, 0; 3: direction mispredicts, target changes. */
EXPORT size_t mcusim_counter_block_stats(const counter_t *c, int which, uint64_t *addr,
                                         uint64_t *size, uint64_t *v0, uint64_t *v1,
                                         size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < c->blocks.cap && k < n; i++) {
        const block_t *e = &c->blocks.slots[i];
        uint64_t a, b;
        switch (which) {
        case 0: a = e->fmiss; b = e->dmiss; break;
        case 1: a = e->rmiss; b = e->rcycles; break;
        case 2: a = e->fpref; b = 0; break;
        default: a = e->dirmiss; b = e->tgtmiss; break;
        }
        if (e->count && (a || b)) {
            addr[k] = e->addr;
            size[k] = e->size;
            v0[k] = a;
            v1[k] = b;
            k++;
        }
    }
    return k;
}

/* Edges (from, to, count); the same (from, to) may appear more than once (blocks of one
 * address with two sizes): the caller sums them. */
EXPORT size_t mcusim_counter_edges(const counter_t *c, uint64_t *from, uint64_t *to,
                                   uint64_t *count, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < c->blocks.cap && k < n; i++) {
        const block_t *e = &c->blocks.slots[i];
        for (int s = 0; s < 2 && e->count && k < n; s++) {
            if (e->scount[s]) {
                from[k] = e->addr;
                to[k] = e->succ[s];
                count[k] = e->scount[s];
                k++;
            }
        }
    }
    for (size_t i = 0; i < c->edges.cap && k < n; i++) {
        const edge_t *e = &c->edges.slots[i];
        if (e->count) {
            from[k] = e->from;
            to[k] = e->to;
            count[k] = e->count;
            k++;
        }
    }
    return k;
}

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_blockhook",
    "Native Unicorn hooks for mcusim (used through ctypes by mcusim.trace.native).", -1, NULL,
};

PyMODINIT_FUNC PyInit__blockhook(void)
{
    return PyModule_Create(&module);
}
