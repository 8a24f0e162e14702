/* Enriches each order with its customer's name from the `customers` table (a topic weir keeps as
 * a local map, `[tables.customers]` in pipeline.toml). Orders are keyed by customer id. Table
 * values are JSON: a name is a JSON string. */
#include <stdio.h>
#include <stdlib.h>

#include "weir.h"

int weir_process(const weir_record *record) {
    const char *who = "an unknown customer";
    int who_len = 19;
    weir_bytes name;
    if (record->key.present && weir_table_get("customers", record->key.ptr, record->key.len, &name) && name.len >= 2 &&
        name.ptr[0] == '"' && name.ptr[name.len - 1] == '"') {
        who = (const char *)name.ptr + 1; /* the JSON string's text (names here have no escapes) */
        who_len = (int)name.len - 2;
    }
    size_t cap = record->value.len + (size_t)who_len + 8;
    char *value = malloc(cap);
    if (!value) return weir_fail("out of memory");
    int len = snprintf(value, cap, "%.*s for %.*s", (int)record->value.len, (const char *)record->value.ptr, who_len, who);
    weir_emit_like(record, value, (size_t)len);
    free(value);
    return WEIR_OK;
}
