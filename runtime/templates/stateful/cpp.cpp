// Counts records per key: for each record, emits its key and how many records with that key
// came so far. The counts live in weir's state store, one per input partition, so input must be
// keyed by what is counted (Kafka sends every record of a key to one partition).
#include <cstdlib>
#include <string>

#include "weir.h"

extern "C" int weir_process(const weir_record *record) {
    if (!record->key.present) return WEIR_OK;
    long long n = 0;
    weir_bytes stored;
    if (weir_state_get(record->key.ptr, record->key.len, &stored)) {
        n = std::atoll(std::string(reinterpret_cast<const char *>(stored.ptr), stored.len).c_str());
    }
    std::string value = std::to_string(n + 1);
    weir_state_put(record->key.ptr, record->key.len, value.data(), value.size());
    weir_emit(record->key.ptr, record->key.len, value.data(), value.size());
    return WEIR_OK;
}
