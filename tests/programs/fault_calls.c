/* Calls through function pointers, as a C compiler emits them (gcc/clang -O2): a call
 * (BLX Rm) and a tail call (BX Rm).  tests/test_fault_messages.py passes NULL or a pointer
 * whose Thumb bit is clear. */
typedef int (*callback_fn)(int);

struct handler {
    int tag;
    callback_fn on_event;
};

/* a call: BLX through the pointer, then uses the result (no tail call) */
int call_callback(callback_fn fn, int x)
{
    return fn(x) + 1;
}

/* a tail call: BX through the pointer */
int tail_callback(callback_fn fn, int x)
{
    return fn(x);
}

/* a call through a struct member */
int dispatch(const struct handler *h, int x)
{
    return h->on_event(x) * 2;
}

int plus_one(int x)
{
    return x + 1;
}
