/* Counts words across all records; for every word seen, emits the word as key and its running
 * count as value. Words are split on Unicode whitespace and lowercased as Rust's
 * `to_lowercase` does for the characters a one-to-one mapping covers (towlower). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <wctype.h>

#include "weir.h"

/* Unicode's White_Space characters (what Rust's split_whitespace splits on). */
static int is_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
           c == 0x3000;
}

/* The code point at s (UTF-8), and its length in bytes; -1 when the bytes are not UTF-8. */
static int decode(const uint8_t *s, size_t n, uint32_t *c) {
    if (s[0] < 0x80) return *c = s[0], 1;
    int len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!len || (size_t)len > n) return -1;
    *c = s[0] & (0x7f >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return -1;
        *c = (*c << 6) | (s[i] & 0x3f);
    }
    return len;
}

static size_t encode(uint32_t c, uint8_t *out) {
    if (c < 0x80) return out[0] = (uint8_t)c, 1;
    if (c < 0x800) return out[0] = 0xc0 | (c >> 6), out[1] = 0x80 | (c & 0x3f), 2;
    if (c < 0x10000)
        return out[0] = 0xe0 | (c >> 12), out[1] = 0x80 | ((c >> 6) & 0x3f), out[2] = 0x80 | (c & 0x3f), 3;
    out[0] = 0xf0 | (c >> 18), out[1] = 0x80 | ((c >> 12) & 0x3f), out[2] = 0x80 | ((c >> 6) & 0x3f);
    return out[3] = 0x80 | (c & 0x3f), 4;
}

static uint8_t word[4096];

static int count(const uint8_t *w, size_t len) {
    weir_bytes stored;
    uint64_t n = 0;
    if (weir_state_get(w, len, &stored)) {
        char text[24] = {0};
        for (size_t i = 0; i < stored.len && i < sizeof text - 1; i++) text[i] = (char)stored.ptr[i];
        n = strtoull(text, NULL, 10);
    }
    char value[24];
    int value_len = snprintf(value, sizeof value, "%" PRIu64, n + 1);
    weir_state_put(w, len, value, (size_t)value_len);
    weir_emit(w, len, value, (size_t)value_len);
    return WEIR_OK;
}

int weir_process(const weir_record *record) {
    if (!record->value.present) return weir_fail("the record has no value (tombstone)");
    const uint8_t *s = record->value.ptr;
    size_t n = record->value.len, len = 0;
    for (size_t at = 0; at <= n;) {
        uint32_t c = ' ';
        int step = 1;
        if (at < n && (step = decode(s + at, n - at, &c)) < 0) return weir_fail("the value is not UTF-8");
        if (is_space(c)) {
            if (len) count(word, len);
            len = 0;
        } else {
            if (len + 4 > sizeof word) return weir_fail("a word longer than %zu bytes", sizeof word - 4);
            len += encode((uint32_t)towlower((wint_t)c), word + len);
        }
        at += (size_t)step;
    }
    return WEIR_OK;
}
