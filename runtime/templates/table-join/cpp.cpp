// Enriches each order with its customer's name from the `customers` table (a topic weir keeps as
// a local map, `[tables.customers]` in pipeline.toml). Orders are keyed by customer id. Table
// values are JSON: a name is a JSON string.
#include <string>
#include <string_view>

#include "weir.h"

extern "C" int weir_process(const weir_record *record) {
    std::string_view who = "an unknown customer";
    weir_bytes name;
    if (record->key.present && weir_table_get("customers", record->key.ptr, record->key.len, &name) &&
        name.len >= 2 && name.ptr[0] == '"' && name.ptr[name.len - 1] == '"') {
        // The JSON string's text (names here have no escapes).
        who = std::string_view(reinterpret_cast<const char *>(name.ptr) + 1, name.len - 2);
    }
    std::string value(reinterpret_cast<const char *>(record->value.ptr), record->value.len);
    value += " for ";
    value += who;
    weir_emit_like(record, value.data(), value.size());
    return WEIR_OK;
}
