/*
 * weir's C SDK: write a stream processor as one function per record.
 *
 *     #include "weir.h"
 *
 *     int weir_process(const weir_record *record) {
 *         weir_emit_like(record, record->value.ptr, record->value.len);   // forward it
 *         return WEIR_OK;
 *     }
 *
 * Build the folder (its entry is app.c; every .c file beside it is compiled too) with
 * `weir build DIR`: clang for wasm32-wasi as a reactor, made a component by weir.
 *
 * weir calls weir_process with each record, in order within its partition. It emits outputs
 * with weir_emit* and returns WEIR_OK, or fails the batch with `return weir_fail(...)`: weir
 * commits nothing of a failed batch and names the record. Define weir_on_timer to handle the
 * timers it sets, and weir_config_keys to accept configuration keys.
 *
 * Memory: a record's bytes, and what weir_state_get, weir_state_scan and weir_table_get hand
 * back, stay valid until weir_process returns; copy what must live longer. What is passed to
 * weir_emit* is copied at once.
 */
#ifndef WEIR_H
#define WEIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WEIR_OK 0

/* Bytes: ptr and len. An absent key or value (a tombstone) has present == false. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
    bool present;
} weir_bytes;

/* One input record. */
typedef struct {
    weir_bytes key;
    weir_bytes value;
    int64_t offset;
    int64_t timestamp; /* ms since the Unix epoch, -1 when it has none */
    int32_t partition;
    weir_bytes topic;
    weir_bytes input; /* the input's name: the topic name unless configured */
    uint32_t index;   /* its position in the batch */
    uint32_t first_header;
    uint32_t header_count;
} weir_record;

/* The record's header i (0 <= i < header_count): its name, and its value (absent allowed). */
void weir_header(const weir_record *record, uint32_t i, weir_bytes *name, weir_bytes *value);

/* Outputs. key == NULL: no key. */
void weir_emit(const void *key, size_t key_len, const void *value, size_t value_len);
/* A tombstone (no value) for key. */
void weir_emit_tombstone(const void *key, size_t key_len);
/* An output like the record (its key and headers, its timestamp) with this value. */
void weir_emit_like(const weir_record *record, const void *value, size_t value_len);
/* The fully described output: topic (NULL: the default output) and timestamp (-1: the one of
 * the record answered) too. */
void weir_emit_to(const char *topic, const void *key, size_t key_len, bool has_key, const void *value,
                  size_t value_len, bool has_value, int64_t timestamp);

/* Fails the batch with a message (printf-style); return its result from weir_process. */
int weir_fail(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* State: raw bytes. The other SDKs store JSON, so a number is its decimal text. */
bool weir_state_get(const void *key, size_t key_len, weir_bytes *value);
void weir_state_put(const void *key, size_t key_len, const void *value, size_t value_len);
void weir_state_delete(const void *key, size_t key_len);
typedef struct {
    weir_bytes key, value;
} weir_entry;
/* Up to limit entries with start <= key (< end when end != NULL), in key order. */
size_t weir_state_scan(const void *start, size_t start_len, const void *end, size_t end_len, uint32_t limit,
                       const weir_entry **entries);

/* The value under key in table `name` (raw bytes, usually JSON). */
bool weir_table_get(const char *name, const void *key, size_t key_len, weir_bytes *value);

/* Timers. */
typedef enum { WEIR_EVENT_TIME = 0, WEIR_WALL_CLOCK = 1 } weir_clock;
typedef struct {
    weir_clock clock;
    int64_t at;
    weir_bytes key;
} weir_timer;
void weir_timer_set(weir_clock clock, int64_t at, const void *key, size_t key_len);
void weir_timer_cancel(weir_clock clock, int64_t at, const void *key, size_t key_len);
/* The partition's event time so far, counting this batch up to the record being processed; -1
 * before any timestamped record. */
int64_t weir_event_time(void);

/* Logs. */
typedef enum { WEIR_TRACE, WEIR_DEBUG, WEIR_INFO, WEIR_WARN, WEIR_ERROR } weir_level;
void weir_log(weir_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/* Stream-stream joins within a time window, with a grace period, on state and timers (the other
 * SDKs' joins, with the same keys and values). A record at t joins the other side's records of its
 * key at t +- within, and leaves the buffer when event time reaches t + within + grace: its timer
 * fires then; pass the timer to weir_join_expire, which says whether each record ever found a
 * partner (for left and outer joins). */
typedef struct {
    const char *name;
    int64_t within_ms, grace_ms;
} weir_join;
typedef enum { WEIR_LEFT = 'L', WEIR_RIGHT = 'R' } weir_side;
typedef struct {
    int64_t timestamp;
    weir_bytes value;
} weir_match;
typedef struct {
    weir_side side;
    weir_bytes key;
    int64_t timestamp;
    weir_bytes value;
    bool matched;
} weir_expired;
/* Buffers the record on side and sets *matches to the other side's buffered records of its key
 * within the window, oldest first; *on_time is false (and nothing is buffered) when the record
 * came too late. The record needs a key and a timestamp. */
int weir_join_add(const weir_join *join, weir_side side, const weir_record *record, const weir_match **matches,
                  size_t *count, bool *on_time);
/* The buffered records the timer expires, taken out of state; *ours is false for timers that
 * are not this join's. */
int weir_join_expire(const weir_join *join, const weir_timer *timer, const weir_expired **expired, size_t *count,
                     bool *ours);

/* Windows of event time, tumbling (advance == size) or hopping, with a grace period for late
 * records, whose aggregate is a 64-bit sum (a count when each record adds 1), stored as the other
 * SDKs store it (JSON, under the same keys). Each window [start, end) of a key keeps its sum in
 * state until event time reaches end + grace; then its timer fires and weir_window_close hands
 * over the final sum once. */
typedef struct {
    const char *name;
    int64_t size_ms, advance_ms, grace_ms;
} weir_windows;
typedef struct {
    weir_bytes key;
    int64_t start, end, value;
} weir_window;
/* Adds delta to the sum of key in each window of the record still open; *taken is how many
 * took it (0: the record came too late for all). The record needs a timestamp. */
int weir_window_add(const weir_windows *windows, const weir_record *record, const void *key, size_t key_len,
                    int64_t delta, int *taken);
/* The window the timer closes, taken out of state; *ours is false for other timers. */
int weir_window_close(const weir_windows *windows, const weir_timer *timer, weir_window *window, bool *ours);

/* The value given for a configuration key, or NULL. */
const char *weir_config(const char *key);

/* What the processor defines. */
int weir_process(const weir_record *record);
/* Optional: called with each timer that fires. */
int weir_on_timer(const weir_timer *timer);
/* Optional: the configuration keys accepted, ending with NULL. */
extern const char *const weir_config_keys[];

#ifdef __cplusplus
}
#endif

#endif
