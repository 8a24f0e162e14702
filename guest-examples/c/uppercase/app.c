/* Uppercases every value (ASCII, like the Rust example); keys, headers and timestamps pass
 * through. */
#include <stdlib.h>

#include "weir.h"

int weir_process(const weir_record *record) {
    if (!record->value.present) {
        weir_emit_like(record, NULL, 0);
        return WEIR_OK;
    }
    uint8_t *upper = malloc(record->value.len ? record->value.len : 1);
    if (!upper) return weir_fail("out of memory");
    for (size_t i = 0; i < record->value.len; i++) {
        uint8_t c = record->value.ptr[i];
        upper[i] = c >= 'a' && c <= 'z' ? (uint8_t)(c - 'a' + 'A') : c;
    }
    weir_emit_like(record, upper, record->value.len);
    free(upper);
    return WEIR_OK;
}
