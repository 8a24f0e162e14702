// Counts records per key in 10-second tumbling windows of event time, waiting 5 seconds for late
// records; emits each window's count once, when the window closes (as the Rust one does).
#include <cinttypes>
#include <string>

#include "weir.h"

namespace {
const weir_windows counts = {"counts", 10000, 10000, 5000};
}

extern "C" int weir_process(const weir_record *record) {
    int taken = 0;
    int failed = weir_window_add(&counts, record, record->key.ptr, record->key.len, 1, &taken);
    if (!failed && taken == 0) weir_log(WEIR_WARN, "late record at offset %" PRId64 " left out", record->offset);
    return failed;
}

extern "C" int weir_on_timer(const weir_timer *timer) {
    weir_window w;
    bool ours = false;
    int failed = weir_window_close(&counts, timer, &w, &ours);
    if (failed || !ours) return failed;
    std::string value = "{\"start\":" + std::to_string(w.start) + ",\"end\":" + std::to_string(w.end) +
                        ",\"count\":" + std::to_string(w.value) + "}";
    weir_emit(w.key.ptr, w.key.len, value.data(), value.size());
    return WEIR_OK;
}
