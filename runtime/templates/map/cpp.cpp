// Uppercases every value (ASCII letters, as the Rust one); keys, headers and timestamps pass
// through. C++20 without exceptions; weir.h is the C SDK.
#include <string>

#include "weir.h"

extern "C" int weir_process(const weir_record *record) {
    std::string value(reinterpret_cast<const char *>(record->value.ptr), record->value.len);
    for (char &c : value) {
        if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    weir_emit_like(record, value.data(), value.size());
    return WEIR_OK;
}
