/*
 * weir's C SDK: the canonical ABI of wit/processor.wit by hand (the world is small), the
 * columns turned into records and outputs back into columns. See weir.h.
 */
#include "weir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ABSENT 0xffffffffu
#define IMPORT(iface, name) __attribute__((import_module("weir:processor/" iface "@0.2.1"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))

IMPORT("state", "get") extern void weir__state_get(const uint8_t *, size_t, void *);
IMPORT("state", "put") extern void weir__state_put(const uint8_t *, size_t, const uint8_t *, size_t);
IMPORT("state", "delete") extern void weir__state_delete(const uint8_t *, size_t);
IMPORT("state", "scan")
extern void weir__state_scan(const uint8_t *, size_t, int32_t, const uint8_t *, size_t, uint32_t, void *);
IMPORT("tables", "get") extern void weir__tables_get(const char *, size_t, const uint8_t *, size_t, void *);
IMPORT("timers", "set") extern void weir__timers_set(int32_t, int64_t, const uint8_t *, size_t);
IMPORT("timers", "cancel") extern void weir__timers_cancel(int32_t, int64_t, const uint8_t *, size_t);
IMPORT("timers", "event-time") extern int64_t weir__timers_event_time(void);
IMPORT("log", "log") extern void weir__log(int32_t, const char *, size_t);

/* The host allocates the lists it hands in with this; the SDK frees them (owned below). */
EXPORT("cabi_realloc") void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    if (new_size == 0) return (void *)align;
    void *p = realloc(ptr, new_size);
    if (!p) abort();
    return p;
}

/* What the host handed over during a call, freed when the call's results are read. */
static void **owned;
static size_t owned_len, owned_cap;

static void own(void *p) {
    if (!p) return;
    if (owned_len == owned_cap) {
        owned_cap = owned_cap ? owned_cap * 2 : 64;
        owned = realloc(owned, owned_cap * sizeof *owned);
        if (!owned) abort();
    }
    owned[owned_len++] = p;
}

/* A list of n bytes (or elements) at p: an empty one has no allocation behind its pointer. */
static void own_list(void *p, size_t n) {
    if (n) own(p);
}

static void free_owned(void) {
    for (size_t i = 0; i < owned_len; i++) free(owned[i]);
    owned_len = 0;
}

/* A growable byte column. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} column;

static void put(column *c, const void *b, size_t n) {
    if (c->len + n > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->len + n) cap *= 2;
        c->p = realloc(c->p, cap);
        if (!c->p) abort();
        c->cap = cap;
    }
    if (n) memcpy(c->p + c->len, b, n);
    c->len += n;
}

static void put32(column *c, uint32_t v) { put(c, &v, 4); } /* wasm is little-endian */

static column rows, sources, stamps, headers, data;
static uint32_t source;

static uint32_t le32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static int64_t le64(const uint8_t *p) { int64_t v; memcpy(&v, p, 8); return v; }

/* The batch being processed. */
static const uint8_t *batch_headers, *batch_data;
static int64_t host_time;
static bool host_time_known;
static int64_t batch_time;

static uint32_t add_bytes(const void *b, size_t n) {
    uint32_t at = (uint32_t)data.len;
    put(&data, b, n);
    return at;
}

static void emit(const char *topic, const void *key, size_t key_len, bool has_key, const void *value,
                 size_t value_len, bool has_value, int64_t timestamp, const weir_record *like) {
    uint32_t row[8] = {0, ABSENT, 0, ABSENT, 0, ABSENT, (uint32_t)(headers.len / 16), 0};
    if (like) {
        for (uint32_t i = 0; i < like->header_count; i++) {
            weir_bytes name, hv;
            weir_header(like, i, &name, &hv);
            uint32_t n = add_bytes(name.ptr, name.len);
            uint32_t v = add_bytes(hv.ptr, hv.present ? hv.len : 0);
            uint32_t h[4] = {n, (uint32_t)name.len, v, hv.present ? (uint32_t)hv.len : ABSENT};
            put(&headers, h, sizeof h);
        }
        row[7] = like->header_count;
    }
    if (topic) {
        row[1] = (uint32_t)strlen(topic);
        row[0] = add_bytes(topic, row[1]);
    }
    if (has_key) {
        row[2] = add_bytes(key, key_len);
        row[3] = (uint32_t)key_len;
    }
    if (has_value) {
        row[4] = add_bytes(value, value_len);
        row[5] = (uint32_t)value_len;
    }
    put(&rows, row, sizeof row);
    put32(&sources, source);
    put(&stamps, &timestamp, 8);
}

void weir_emit(const void *key, size_t key_len, const void *value, size_t value_len) {
    emit(NULL, key, key_len, key != NULL, value, value_len, true, -1, NULL);
}

void weir_emit_tombstone(const void *key, size_t key_len) {
    emit(NULL, key, key_len, key != NULL, NULL, 0, false, -1, NULL);
}

void weir_emit_like(const weir_record *r, const void *value, size_t value_len) {
    emit(NULL, r->key.ptr, r->key.len, r->key.present, value, value_len, r->value.present, -1, r);
}

void weir_emit_to(const char *topic, const void *key, size_t key_len, bool has_key, const void *value,
                  size_t value_len, bool has_value, int64_t timestamp) {
    emit(topic, key, key_len, has_key, value, value_len, has_value, timestamp, NULL);
}

void weir_header(const weir_record *r, uint32_t i, weir_bytes *name, weir_bytes *value) {
    const uint8_t *h = batch_headers + 16 * (r->first_header + i);
    uint32_t vl = le32(h + 12);
    *name = (weir_bytes){batch_data + le32(h), le32(h + 4), true};
    *value = (weir_bytes){vl == ABSENT ? NULL : batch_data + le32(h + 8), vl == ABSENT ? 0 : vl, vl != ABSENT};
}

static char failure[1024];

int weir_fail(const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(failure, sizeof failure, format, args);
    va_end(args);
    return 1;
}

void weir_log(weir_level level, const char *format, ...) {
    char line[4096];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (n < 0) return;
    weir__log((int32_t)level, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* An import's compound result. */
static struct {
    uint32_t tag;
    uint8_t *ptr;
    size_t len;
} ret;

static bool option_result(weir_bytes *value) {
    if ((ret.tag & 0xff) == 0) {
        *value = (weir_bytes){NULL, 0, false};
        return false;
    }
    own_list(ret.ptr, ret.len);
    *value = (weir_bytes){ret.ptr, ret.len, true};
    return true;
}

bool weir_state_get(const void *key, size_t key_len, weir_bytes *value) {
    weir__state_get(key, key_len, &ret);
    return option_result(value);
}

void weir_state_put(const void *key, size_t key_len, const void *value, size_t value_len) {
    weir__state_put(key, key_len, value, value_len);
}

void weir_state_delete(const void *key, size_t key_len) { weir__state_delete(key, key_len); }

size_t weir_state_scan(const void *start, size_t start_len, const void *end, size_t end_len, uint32_t limit,
                       const weir_entry **entries) {
    struct {
        uint8_t *ptr;
        size_t len;
    } list;
    weir__state_scan(start, start_len, end != NULL, end, end_len, limit, &list);
    own_list(list.ptr, list.len);
    weir_entry *out = calloc(list.len ? list.len : 1, sizeof *out);
    if (!out) abort();
    own(out);
    for (size_t i = 0; i < list.len; i++) {
        const uint8_t *e = list.ptr + 16 * i;
        uint8_t *k = (uint8_t *)(uintptr_t)le32(e), *v = (uint8_t *)(uintptr_t)le32(e + 8);
        own_list(k, le32(e + 4));
        own_list(v, le32(e + 12));
        out[i] = (weir_entry){{k, le32(e + 4), true}, {v, le32(e + 12), true}};
    }
    *entries = out;
    return list.len;
}

bool weir_table_get(const char *name, const void *key, size_t key_len, weir_bytes *value) {
    weir__tables_get(name, strlen(name), key, key_len, &ret);
    return option_result(value);
}

void weir_timer_set(weir_clock clock, int64_t at, const void *key, size_t key_len) {
    weir__timers_set((int32_t)clock, at, key, key_len);
}

void weir_timer_cancel(weir_clock clock, int64_t at, const void *key, size_t key_len) {
    weir__timers_cancel((int32_t)clock, at, key, key_len);
}

int64_t weir_event_time(void) {
    if (!host_time_known) {
        host_time = weir__timers_event_time();
        host_time_known = true;
    }
    return host_time > batch_time ? host_time : batch_time;
}

/* Configuration, as given to init. */
static char **config_pairs;
static size_t config_len;

const char *weir_config(const char *key) {
    for (size_t i = 0; i < config_len; i++)
        if (strcmp(config_pairs[2 * i], key) == 0) return config_pairs[2 * i + 1];
    return NULL;
}

__attribute__((weak)) const char *const weir_config_keys[] = {NULL};

__attribute__((weak)) int weir_on_timer(const weir_timer *timer) {
    (void)timer;
    return weir_fail("a timer fired, but no function handles timers: define weir_on_timer");
}

/* The exports' return area: a tag at 0, the payload from 4. */
static uint32_t result[11];

static char *copy_string(const uint8_t *p, size_t n) {
    char *s = malloc(n + 1);
    if (!s) abort();
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

static uint32_t string_result(uint32_t at, const char *message) {
    size_t n = strlen(message);
    char *copy = copy_string((const uint8_t *)message, n);
    own(copy);
    result[at] = (uint32_t)(uintptr_t)copy;
    result[at + 1] = (uint32_t)n;
    return (uint32_t)(uintptr_t)result;
}

EXPORT("weir:processor/processor@0.2.1#init") uint32_t weir__init(uint8_t *pairs, size_t n) {
    own_list(pairs, n);
    char unknown[512] = "";
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = pairs + 16 * i;
        own_list((void *)(uintptr_t)le32(p), le32(p + 4));
        own_list((void *)(uintptr_t)le32(p + 8), le32(p + 12));
    }
    for (size_t i = 0; i < n && !unknown[0]; i++) {
        uint8_t *p = pairs + 16 * i;
        char *key = copy_string((const uint8_t *)(uintptr_t)le32(p), le32(p + 4));
        bool known = false;
        for (const char *const *k = weir_config_keys; *k; k++) known = known || strcmp(*k, key) == 0;
        if (!known) snprintf(unknown, sizeof unknown, "%s", key);
        free(key);
    }
    if (unknown[0]) {
        char message[1024];
        if (!weir_config_keys[0]) {
            snprintf(message, sizeof message, "unknown config key `%s`; this processor takes no configuration", unknown);
        } else {
            int at = snprintf(message, sizeof message, "unknown config key `%s`; this processor accepts: ", unknown);
            for (const char *const *k = weir_config_keys; *k && at < (int)sizeof message; k++)
                at += snprintf(message + at, sizeof message - at, "%s%s", k == weir_config_keys ? "" : ", ", *k);
        }
        result[0] = 1;
        return string_result(1, message);
    }
    config_pairs = realloc(config_pairs, (2 * n + 1) * sizeof *config_pairs);
    if (!config_pairs) abort();
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = pairs + 16 * i;
        config_pairs[2 * i] = copy_string((const uint8_t *)(uintptr_t)le32(p), le32(p + 4));
        config_pairs[2 * i + 1] = copy_string((const uint8_t *)(uintptr_t)le32(p + 8), le32(p + 12));
    }
    config_len = n;
    result[0] = 0;
    return (uint32_t)(uintptr_t)result;
}

static void begin(void) {
    rows.len = sources.len = stamps.len = headers.len = data.len = 0;
    host_time_known = false;
    batch_time = -1;
    failure[0] = 0;
}

static uint32_t finish(int failed, uint32_t index) {
    if (failed) {
        result[0] = 1;
        result[1] = 1;
        result[2] = index;
        return string_result(3, failure[0] ? failure : "failed (weir_fail gave no message)");
    }
    column *columns[5] = {&rows, &sources, &stamps, &headers, &data};
    result[0] = 0;
    for (int i = 0; i < 5; i++) {
        result[1 + 2 * i] = (uint32_t)(uintptr_t)columns[i]->p;
        result[2 + 2 * i] = (uint32_t)columns[i]->len;
    }
    return (uint32_t)(uintptr_t)result;
}

EXPORT("weir:processor/processor@0.2.1#process")
uint32_t weir__process(uint8_t *input, size_t input_len, uint8_t *topic, size_t topic_len, int32_t partition,
                       uint8_t *offsets, size_t offsets_len, uint8_t *timestamps, size_t timestamps_len,
                       uint8_t *records, size_t records_len, uint8_t *header_rows, size_t headers_len,
                       uint8_t *bytes, size_t bytes_len) {
    uint8_t *lists[7] = {input, topic, offsets, timestamps, records, header_rows, bytes};
    size_t lens[7] = {input_len, topic_len, offsets_len, timestamps_len, records_len, headers_len, bytes_len};
    for (int i = 0; i < 7; i++) own_list(lists[i], lens[i]);
    begin();
    batch_headers = header_rows;
    batch_data = bytes;
    size_t n = offsets_len / 8;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *row = records + 24 * i;
        uint32_t kl = le32(row + 4), vl = le32(row + 12);
        weir_record r = {
            .key = {kl == ABSENT ? NULL : bytes + le32(row), kl == ABSENT ? 0 : kl, kl != ABSENT},
            .value = {vl == ABSENT ? NULL : bytes + le32(row + 8), vl == ABSENT ? 0 : vl, vl != ABSENT},
            .offset = le64(offsets + 8 * i),
            .timestamp = le64(timestamps + 8 * i),
            .partition = partition,
            .topic = {topic, topic_len, true},
            .input = {input, input_len, true},
            .index = (uint32_t)i,
            .first_header = le32(row + 16),
            .header_count = le32(row + 20),
        };
        if (r.timestamp > batch_time) batch_time = r.timestamp;
        source = (uint32_t)i;
        if (weir_process(&r) != WEIR_OK) {
            weir_log(WEIR_ERROR, "record %zu (offset %lld): %s", i, (long long)r.offset, failure);
            return finish(1, (uint32_t)i);
        }
    }
    return finish(0, 0);
}

EXPORT("weir:processor/timer-handler@0.2.1#on-timer") uint32_t weir__on_timer(uint8_t *timers, size_t n) {
    own_list(timers, n);
    begin();
    for (size_t i = 0; i < n; i++) {
        const uint8_t *t = timers + 24 * i;
        uint8_t *key = (uint8_t *)(uintptr_t)le32(t + 16);
        own_list(key, le32(t + 20));
        weir_timer timer = {(weir_clock)t[0], le64(t + 8), {key, le32(t + 20), true}};
        source = (uint32_t)i;
        if (weir_on_timer(&timer) != WEIR_OK) {
            weir_log(WEIR_ERROR, "timer %zu (at %lld): %s", i, (long long)timer.at, failure);
            return finish(1, (uint32_t)i);
        }
    }
    return finish(0, 0);
}

/* After the host has read a call's results: free what the call was handed. */
EXPORT("cabi_post_weir:processor/processor@0.2.1#init") void weir__post_init(uint32_t r) { (void)r, free_owned(); }
EXPORT("cabi_post_weir:processor/processor@0.2.1#process") void weir__post_process(uint32_t r) {
    (void)r, free_owned();
}
EXPORT("cabi_post_weir:processor/timer-handler@0.2.1#on-timer") void weir__post_on_timer(uint32_t r) {
    (void)r, free_owned();
}

/* Joins: keys "weir.join/<name>/" side len(key) key time, values [matched][length][value]... */

static uint8_t *owned_copy(const void *b, size_t n) {
    uint8_t *p = malloc(n ? n : 1);
    if (!p) abort();
    if (n) memcpy(p, b, n);
    own(p);
    return p;
}

static void be32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void time_key(uint8_t *p, int64_t at) {
    uint64_t v = (uint64_t)at ^ (1ull << 63);
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static int64_t time_from(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return (int64_t)(v ^ (1ull << 63));
}

static uint32_t from_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* "weir.join/<name>/" + side + len + key, with room for 8 more bytes; its length in *len. */
static uint8_t *join_prefix(const weir_join *j, char side, const weir_bytes *key, size_t *len) {
    size_t name = strlen(j->name), n = 10 + name + 1 + 1 + 4 + key->len;
    uint8_t *p = malloc(n + 8);
    if (!p) abort();
    own(p);
    memcpy(p, "weir.join/", 10);
    memcpy(p + 10, j->name, name);
    p[10 + name] = '/';
    p[11 + name] = (uint8_t)side;
    be32(p + 12 + name, (uint32_t)key->len);
    if (key->len) memcpy(p + 16 + name, key->ptr, key->len);
    *len = n;
    return p;
}

/* Checks a buffer's framing; returns how many records it holds, or -1. */
static long buffered_count(const uint8_t *raw, size_t n) {
    long count = 0;
    for (size_t at = 0; at < n; count++) {
        if (at + 5 > n || at + 5 + from_be32(raw + at + 1) > n) return -1;
        at += 5 + from_be32(raw + at + 1);
    }
    return count;
}

int weir_join_add(const weir_join *j, weir_side side, const weir_record *r, const weir_match **matches,
                  size_t *count, bool *on_time) {
    *matches = NULL, *count = 0, *on_time = false;
    if (!r->key.present || r->timestamp < 0)
        return weir_fail("join `%s`: the record needs a key and a timestamp", j->name);
    int64_t ts = r->timestamp, expires = ts + j->within_ms + j->grace_ms, now = weir_event_time();
    if (now >= 0 && expires <= now) return WEIR_OK;
    *on_time = true;
    size_t other_len, own_len;
    uint8_t *from = join_prefix(j, side == WEIR_LEFT ? WEIR_RIGHT : WEIR_LEFT, &r->key, &other_len);
    uint8_t *to = owned_copy(from, other_len + 8);
    time_key(from + other_len, ts - j->within_ms);
    time_key(to + other_len, ts + j->within_ms + 1);
    size_t from_len = other_len + 8, cap = 0;
    weir_match *found = NULL;
    for (;;) {
        const weir_entry *page;
        size_t n = weir_state_scan(from, from_len, to, other_len + 8, 256, &page);
        for (size_t i = 0; i < n; i++) {
            const weir_entry *e = &page[i];
            long k = buffered_count(e->value.ptr, e->value.len);
            if (k < 0 || e->key.len != other_len + 8) {
                free(found);
                *count = 0;
                return weir_fail("join `%s`: a buffer is corrupt", j->name);
            }
            int64_t at = time_from(e->key.ptr + other_len);
            bool all = true;
            uint8_t *raw = owned_copy(e->value.ptr, e->value.len);
            for (size_t p = 0; p < e->value.len; p += 5 + from_be32(raw + p + 1)) {
                all = all && raw[p] == 1;
                raw[p] = 1;
                if (*count == cap) {
                    cap = cap ? cap * 2 : 8;
                    found = realloc(found, cap * sizeof *found);
                    if (!found) abort();
                }
                found[(*count)++] = (weir_match){at, {raw + p + 5, from_be32(raw + p + 1), true}};
            }
            if (!all) weir_state_put(e->key.ptr, e->key.len, raw, e->value.len);
        }
        if (n < 256) break;
        from = owned_copy(page[n - 1].key.ptr, page[n - 1].key.len + 1);
        from_len = page[n - 1].key.len + 1;
        from[from_len - 1] = 0;
    }
    own(found);
    *matches = found;
    uint8_t *mine = join_prefix(j, (char)side, &r->key, &own_len);
    time_key(mine + own_len, ts);
    own_len += 8;
    weir_bytes before;
    size_t had = weir_state_get(mine, own_len, &before) ? before.len : 0;
    size_t value_len = r->value.present ? r->value.len : 0;
    uint8_t *buffer = malloc(had + 5 + value_len);
    if (!buffer) abort();
    own(buffer);
    if (had) memcpy(buffer, before.ptr, had);
    buffer[had] = *count > 0;
    be32(buffer + had + 1, (uint32_t)value_len);
    if (value_len) memcpy(buffer + had + 5, r->value.ptr, value_len);
    weir_state_put(mine, own_len, buffer, had + 5 + value_len);
    weir_timer_set(WEIR_EVENT_TIME, expires, mine, own_len);
    return WEIR_OK;
}

int weir_join_expire(const weir_join *j, const weir_timer *t, const weir_expired **expired, size_t *count,
                     bool *ours) {
    *expired = NULL, *count = 0, *ours = false;
    size_t name = strlen(j->name), head = 10 + name + 1;
    const uint8_t *k = t->key.ptr;
    if (t->key.len < head + 5 || memcmp(k, "weir.join/", 10) != 0 || memcmp(k + 10, j->name, name) != 0 ||
        k[10 + name] != '/')
        return WEIR_OK;
    char side = (char)k[head];
    uint32_t key_len = from_be32(k + head + 1);
    if ((side != WEIR_LEFT && side != WEIR_RIGHT) || t->key.len != head + 5 + key_len + 8) return WEIR_OK;
    *ours = true;
    weir_bytes raw;
    if (!weir_state_get(k, t->key.len, &raw)) return WEIR_OK;
    weir_state_delete(k, t->key.len);
    long n = buffered_count(raw.ptr, raw.len);
    if (n < 0) return weir_fail("join `%s`: a buffer is corrupt", j->name);
    weir_expired *out = calloc(n ? (size_t)n : 1, sizeof *out);
    if (!out) abort();
    own(out);
    int64_t ts = time_from(k + head + 5 + key_len);
    size_t at = 0;
    for (long i = 0; i < n; i++) {
        uint32_t len = from_be32(raw.ptr + at + 1);
        out[i] = (weir_expired){(weir_side)side, {k + head + 5, key_len, true}, ts, {raw.ptr + at + 5, len, true},
                                raw.ptr[at] == 1};
        at += 5 + len;
    }
    *expired = out;
    *count = (size_t)n;
    return WEIR_OK;
}

/* Windows: keys "weir.window/<name>/" start key, values the sum as JSON. */

static int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int weir_window_add(const weir_windows *w, const weir_record *r, const void *key, size_t key_len, int64_t delta,
                    int *taken) {
    *taken = 0;
    if (r->timestamp < 0) return weir_fail("window `%s`: the record has no timestamp", w->name);
    int64_t now = weir_event_time();
    now = now < 0 ? r->timestamp : now;
    int64_t size = w->size_ms > 1 ? w->size_ms : 1, advance = w->advance_ms > 1 ? w->advance_ms : 1;
    int64_t last = floor_div(r->timestamp, advance) * advance;
    size_t name = strlen(w->name), head = 12 + name + 1;
    uint8_t *k = malloc(head + 8 + key_len);
    if (!k) abort();
    own(k);
    memcpy(k, "weir.window/", 12);
    memcpy(k + 12, w->name, name);
    k[12 + name] = '/';
    if (key_len) memcpy(k + head + 8, key, key_len);
    for (int64_t start = last - (size - 1) / advance * advance; start <= last; start += advance) {
        int64_t closes = start + size + w->grace_ms;
        if (start + size <= r->timestamp || closes <= now) continue;
        time_key(k + head, start);
        weir_bytes raw;
        int64_t sum = 0;
        if (weir_state_get(k, head + 8 + key_len, &raw)) {
            char text[32] = {0};
            memcpy(text, raw.ptr, raw.len < sizeof text - 1 ? raw.len : sizeof text - 1);
            char *end;
            sum = strtoll(text, &end, 10);
            if (end == text || *end) return weir_fail("window `%s`: a sum in state is not an integer", w->name);
        }
        char value[32];
        int n = snprintf(value, sizeof value, "%lld", (long long)(sum + delta));
        weir_state_put(k, head + 8 + key_len, value, (size_t)n);
        weir_timer_set(WEIR_EVENT_TIME, closes, k, head + 8 + key_len);
        (*taken)++;
    }
    return WEIR_OK;
}

int weir_window_close(const weir_windows *w, const weir_timer *t, weir_window *window, bool *ours) {
    *ours = false;
    size_t name = strlen(w->name), head = 12 + name + 1;
    const uint8_t *k = t->key.ptr;
    if (t->key.len < head + 8 || memcmp(k, "weir.window/", 12) != 0 || memcmp(k + 12, w->name, name) != 0 ||
        k[12 + name] != '/')
        return WEIR_OK;
    weir_bytes raw;
    if (!weir_state_get(k, t->key.len, &raw)) return WEIR_OK;
    weir_state_delete(k, t->key.len);
    *ours = true;
    char text[32] = {0}, *end;
    memcpy(text, raw.ptr, raw.len < sizeof text - 1 ? raw.len : sizeof text - 1);
    int64_t start = time_from(k + head);
    *window = (weir_window){{k + head + 8, t->key.len - head - 8, true}, start, start + w->size_ms, strtoll(text, &end, 10)};
    if (end == text || *end) return weir_fail("window `%s`: a sum in state is not an integer", w->name);
    return WEIR_OK;
}
