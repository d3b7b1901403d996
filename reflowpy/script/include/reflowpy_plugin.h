/* reflowpy_plugin.h -- write reflowpy `script/wasm` plugins in C.
 *
 * Build (no libc needed):
 *   clang --target=wasm32 -O2 -nostdlib -Wl,--no-entry -Wl,--export-dynamic \
 *         -I reflowpy/script/include plugin.c -o plugin.wasm
 *
 * The plugin defines one function:
 *
 *   int rf_process(rf_reader *in, rf_writer *out);
 *
 * `in` reads the message's inputs: a msgpack map {in-port: value}. Write the outputs
 * as a msgpack map {out-port: value} into `out` (start with rf_write_map(out, n)),
 * or write nothing for no outputs. Return 0 on success; a non-zero return traps,
 * which reflowpy reports on the node as WasmTrap and resets the instance.
 * rf_send_output(port, value_bytes, len) streams an output immediately, any number
 * of times; rf_log() logs; rf_get_state()/rf_set_state() read/replace the node's
 * state map (msgpack bytes), which survives instance resets.
 *
 * Optionally define RF_PLUGIN_INIT and `int rf_init(rf_reader *config)`; non-zero
 * refuses to start the node.
 *
 * The ABI this implements (see reflowpy/script/wasm.py):
 *   exports memory, alloc(i32)->i32, process(i32 ptr, i32 len)->i64 (ptr<<32|len),
 *           init(i32, i32)->i32 (optional)
 *   imports reflowpy.send_output(i32,i32,i32,i32), reflowpy.get_state(i32,i32)->i32,
 *           reflowpy.set_state(i32,i32), reflowpy.log(i32,i32,i32)
 */
#ifndef REFLOWPY_PLUGIN_H
#define REFLOWPY_PLUGIN_H

#include <stdint.h>
#include <stddef.h>

#define RF_IMPORT(name) __attribute__((import_module("reflowpy"), import_name(#name)))
#define RF_EXPORT(name) __attribute__((export_name(#name)))

RF_IMPORT(send_output) void rf_host_send_output(const char *port, int32_t port_len,
                                                 const uint8_t *value, int32_t value_len);
RF_IMPORT(get_state) int32_t rf_get_state(uint8_t *buf, int32_t cap);
RF_IMPORT(set_state) void rf_set_state(const uint8_t *buf, int32_t len);
RF_IMPORT(log) void rf_host_log(int32_t level, const char *msg, int32_t len);

enum { RF_DEBUG = 0, RF_INFO = 1, RF_WARNING = 2, RF_ERROR = 3 };

static inline size_t rf_strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static inline void rf_memcpy(uint8_t *d, const uint8_t *s, size_t n) { while (n--) *d++ = *s++; }

static inline void rf_log(int level, const char *msg) { rf_host_log(level, msg, (int32_t)rf_strlen(msg)); }
static inline void rf_send_output(const char *port, const uint8_t *value, int32_t len) {
    rf_host_send_output(port, (int32_t)rf_strlen(port), value, len);
}

/* ---- memory: a bump allocator on top of memory.grow; alloc() is what the host calls */
extern unsigned char __heap_base;
static uintptr_t rf_heap_top;
static uintptr_t rf_call_base;  /* allocations above this are freed at the next call */

static inline void *rf_malloc(size_t size) {
    if (!rf_heap_top) rf_heap_top = (uintptr_t)&__heap_base;
    uintptr_t p = (rf_heap_top + 7) & ~(uintptr_t)7;
    uintptr_t end = p + size;
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536u;
    if (end > have) {
        if (__builtin_wasm_memory_grow(0, (end - have + 65535) / 65536) == (size_t)-1)
            __builtin_trap(); /* over the node's memory limit */
    }
    rf_heap_top = end;
    return (void *)p;
}

/* The host's input buffer: it lives until the instance is reset. */
RF_EXPORT(alloc) void *rf_alloc_export(int32_t size) {
    void *p = rf_malloc((size_t)size);
    rf_call_base = rf_heap_top;
    return p;
}

/* ---- msgpack reader (the subset messages use) */
typedef struct { const uint8_t *p, *end; int error; } rf_reader;

static inline uint64_t rf__be(const uint8_t *p, int n) { uint64_t v = 0; for (int i = 0; i < n; i++) v = v << 8 | p[i]; return v; }
static inline int rf__need(rf_reader *r, size_t n) { if ((size_t)(r->end - r->p) < n) { r->error = 1; return 0; } return 1; }

/* Number of entries of a map (or -1 on a type error). */
static inline int64_t rf_read_map(rf_reader *r) {
    if (!rf__need(r, 1)) return -1;
    uint8_t b = *r->p;
    if ((b & 0xf0) == 0x80) { r->p++; return b & 0x0f; }
    if (b == 0xde && rf__need(r, 3)) { r->p += 3; return (int64_t)rf__be(r->p - 2, 2); }
    if (b == 0xdf && rf__need(r, 5)) { r->p += 5; return (int64_t)rf__be(r->p - 4, 4); }
    r->error = 1; return -1;
}
static inline int64_t rf_read_array(rf_reader *r) {
    if (!rf__need(r, 1)) return -1;
    uint8_t b = *r->p;
    if ((b & 0xf0) == 0x90) { r->p++; return b & 0x0f; }
    if (b == 0xdc && rf__need(r, 3)) { r->p += 3; return (int64_t)rf__be(r->p - 2, 2); }
    if (b == 0xdd && rf__need(r, 5)) { r->p += 5; return (int64_t)rf__be(r->p - 4, 4); }
    r->error = 1; return -1;
}
/* A string: returns its bytes (not NUL-terminated) and sets *len. */
static inline const char *rf_read_str(rf_reader *r, size_t *len) {
    if (!rf__need(r, 1)) return 0;
    uint8_t b = *r->p; size_t n, h;
    if ((b & 0xe0) == 0xa0) { n = b & 0x1f; h = 1; }
    else if (b == 0xd9 && rf__need(r, 2)) { n = r->p[1]; h = 2; }
    else if (b == 0xda && rf__need(r, 3)) { n = (size_t)rf__be(r->p + 1, 2); h = 3; }
    else if (b == 0xdb && rf__need(r, 5)) { n = (size_t)rf__be(r->p + 1, 4); h = 5; }
    else { r->error = 1; return 0; }
    if (!rf__need(r, h + n)) return 0;
    const char *s = (const char *)r->p + h; r->p += h + n; *len = n; return s;
}
static inline int rf_str_eq(const char *s, size_t n, const char *lit) {
    size_t m = rf_strlen(lit); if (m != n) return 0;
    for (size_t i = 0; i < n; i++) if (s[i] != lit[i]) return 0;
    return 1;
}
/* Any number (int or float) as a double. */
static inline double rf_read_number(rf_reader *r) {
    if (!rf__need(r, 1)) return 0;
    uint8_t b = *r->p;
    if (b < 0x80) { r->p++; return b; }
    if (b >= 0xe0) { r->p++; return (int8_t)b; }
    if (b == 0xcb && rf__need(r, 9)) { union { uint64_t u; double d; } u; u.u = rf__be(r->p + 1, 8); r->p += 9; return u.d; }
    if (b == 0xca && rf__need(r, 5)) { union { uint32_t u; float f; } u; u.u = (uint32_t)rf__be(r->p + 1, 4); r->p += 5; return u.f; }
    if (b >= 0xcc && b <= 0xcf) { int n = 1 << (b - 0xcc); if (!rf__need(r, 1 + n)) return 0; uint64_t v = rf__be(r->p + 1, n); r->p += 1 + n; return (double)v; }
    if (b >= 0xd0 && b <= 0xd3) {
        int n = 1 << (b - 0xd0); if (!rf__need(r, 1 + n)) return 0;
        uint64_t v = rf__be(r->p + 1, n); r->p += 1 + n;
        int shift = 64 - 8 * n; return (double)((int64_t)(v << shift) >> shift);
    }
    r->error = 1; return 0;
}
/* Skip one value of any type. */
static inline void rf_skip(rf_reader *r) {
    if (!rf__need(r, 1)) return;
    uint8_t b = *r->p;
    if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf) { int64_t n = rf_read_map(r); for (int64_t i = 0; i < 2 * n && !r->error; i++) rf_skip(r); return; }
    if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd) { int64_t n = rf_read_array(r); for (int64_t i = 0; i < n && !r->error; i++) rf_skip(r); return; }
    if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb)) { size_t n; rf_read_str(r, &n); return; }
    if (b >= 0xc4 && b <= 0xc6) { int w = 1 << (b - 0xc4); if (!rf__need(r, 1 + w)) return; size_t n = (size_t)rf__be(r->p + 1, w); if (rf__need(r, 1 + w + n)) r->p += 1 + w + n; return; }
    if (b == 0xc0 || b == 0xc2 || b == 0xc3) { r->p++; return; }
    rf_read_number(r);
}

/* ---- msgpack writer into a growable buffer */
typedef struct { uint8_t *buf; size_t len, cap; } rf_writer;

static inline void rf__reserve(rf_writer *w, size_t n) {
    if (w->len + n <= w->cap) return;
    size_t cap = w->cap ? w->cap * 2 : 256; while (cap < w->len + n) cap *= 2;
    uint8_t *nb = (uint8_t *)rf_malloc(cap); if (w->len) rf_memcpy(nb, w->buf, w->len);
    w->buf = nb; w->cap = cap;
}
static inline void rf__put(rf_writer *w, uint8_t b) { rf__reserve(w, 1); w->buf[w->len++] = b; }
static inline void rf__put_be(rf_writer *w, uint64_t v, int n) { rf__reserve(w, n); for (int i = n - 1; i >= 0; i--) w->buf[w->len++] = (uint8_t)(v >> (8 * i)); }

static inline void rf_write_map(rf_writer *w, uint32_t n) { if (n < 16) rf__put(w, 0x80 | n); else { rf__put(w, 0xdf); rf__put_be(w, n, 4); } }
static inline void rf_write_array(rf_writer *w, uint32_t n) { if (n < 16) rf__put(w, 0x90 | n); else { rf__put(w, 0xdd); rf__put_be(w, n, 4); } }
static inline void rf_write_strn(rf_writer *w, const char *s, size_t n) {
    if (n < 32) rf__put(w, 0xa0 | (uint8_t)n); else { rf__put(w, 0xdb); rf__put_be(w, n, 4); }
    rf__reserve(w, n); rf_memcpy(w->buf + w->len, (const uint8_t *)s, n); w->len += n;
}
static inline void rf_write_str(rf_writer *w, const char *s) { rf_write_strn(w, s, rf_strlen(s)); }
static inline void rf_write_int(rf_writer *w, int64_t v) {
    if (v >= 0 && v < 128) rf__put(w, (uint8_t)v);
    else if (v < 0 && v >= -32) rf__put(w, (uint8_t)v);
    else { rf__put(w, 0xd3); rf__put_be(w, (uint64_t)v, 8); }
}
static inline void rf_write_double(rf_writer *w, double d) { union { double d; uint64_t u; } u; u.d = d; rf__put(w, 0xcb); rf__put_be(w, u.u, 8); }
static inline void rf_write_nil(rf_writer *w) { rf__put(w, 0xc0); }
static inline void rf_write_bool(rf_writer *w, int b) { rf__put(w, b ? 0xc3 : 0xc2); }

/* ---- the exports reflowpy calls */
int rf_process(rf_reader *in, rf_writer *out);

RF_EXPORT(process) int64_t rf_process_export(const uint8_t *ptr, int32_t len) {
    /* Scratch memory of the previous call (its output included) is reused now. */
    if (rf_call_base) rf_heap_top = rf_call_base;
    rf_writer out = { 0, 0, 0 };
    rf_reader in = { ptr, ptr + len, 0 };
    if (rf_process(&in, &out) != 0) __builtin_trap();
    if (!out.len) return 0;
    return ((int64_t)(uintptr_t)out.buf << 32) | (int64_t)out.len;
}

#ifdef RF_PLUGIN_INIT
int rf_init(rf_reader *config);
RF_EXPORT(init) int32_t rf_init_export(const uint8_t *ptr, int32_t len) {
    rf_reader in = { ptr, ptr + len, 0 };
    int32_t rc = rf_init(&in);
    rf_call_base = rf_heap_top;  /* what init allocated stays */
    return rc;
}
#endif

#endif /* REFLOWPY_PLUGIN_H */
