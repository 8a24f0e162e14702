/* Counts records per key: for each record, emits its key and how many records with that key
 * came so far. The counts live in weir's state store, one per input partition, so input must be
 * keyed by what is counted (Kafka sends every record of a key to one partition). */
#include <stdio.h>
#include <stdlib.h>

#include "weir.h"

int weir_process(const weir_record *record) {
    if (!record->key.present) return WEIR_OK;
    long long n = 0;
    weir_bytes stored;
    if (weir_state_get(record->key.ptr, record->key.len, &stored)) {
        char text[24] = {0};
        for (size_t i = 0; i < stored.len && i < sizeof text - 1; i++) text[i] = (char)stored.ptr[i];
        n = atoll(text);
    }
    char value[24];
    int len = snprintf(value, sizeof value, "%lld", n + 1);
    weir_state_put(record->key.ptr, record->key.len, value, (size_t)len);
    weir_emit(record->key.ptr, record->key.len, value, (size_t)len);
    return WEIR_OK;
}
