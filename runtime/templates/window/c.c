/* Counts records per key in 10-second tumbling windows of event time, waiting 5 seconds for late
 * records; emits each window's count once, when the window closes (as the Rust one does). */
#include <inttypes.h>
#include <stdio.h>

#include "weir.h"

static const weir_windows counts = {"counts", 10000, 10000, 5000};

int weir_process(const weir_record *record) {
    int taken;
    int failed = weir_window_add(&counts, record, record->key.ptr, record->key.len, 1, &taken);
    if (!failed && taken == 0) weir_log(WEIR_WARN, "late record at offset %" PRId64 " left out", record->offset);
    return failed;
}

int weir_on_timer(const weir_timer *timer) {
    weir_window w;
    bool ours;
    int failed = weir_window_close(&counts, timer, &w, &ours);
    if (failed || !ours) return failed;
    char value[128];
    int n = snprintf(value, sizeof value, "{\"start\":%" PRId64 ",\"end\":%" PRId64 ",\"count\":%" PRId64 "}", w.start,
                     w.end, w.value);
    weir_emit(w.key.ptr, w.key.len, value, (size_t)n);
    return WEIR_OK;
}
