/* Uppercases every value (ASCII letters, as the Rust one); keys, headers and timestamps pass
 * through. */
#include <stdlib.h>

#include "weir.h"

static uint8_t ascii_upper(uint8_t c) { return c >= 'a' && c <= 'z' ? (uint8_t)(c - 'a' + 'A') : c; }

int weir_process(const weir_record *record) {
    size_t n = record->value.len;
    uint8_t *value = malloc(n + 1);
    if (value == NULL) return weir_fail("no memory for a value of %zu bytes", n);
    for (size_t i = 0; i < n; i++) value[i] = ascii_upper(record->value.ptr[i]);
    weir_emit_like(record, value, n);
    free(value);
    return WEIR_OK;
}
