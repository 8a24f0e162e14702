#define _GNU_SOURCE /* memmem */
/* The orders' notification step, as the Rust one: joins each validated order with its payment
 * within 10 minutes of event time (1 minute of grace) and emails once per order. */
#include <stdio.h>
#include <string.h>

#include "weir.h"

const char *const weir_config_keys[] = {"payments", NULL};

static const weir_join paid = {"order-payment", 600000, 60000};

static void email(weir_bytes order, const char *status) {
    char value[512];
    int n = snprintf(value, sizeof value, "{\"order_id\":\"%.*s\",\"email\":\"%s\"}", (int)order.len,
                     (const char *)order.ptr, status);
    weir_emit(order.ptr, order.len, value, (size_t)n);
}

int weir_process(const weir_record *record) {
    const char *payments = weir_config("payments");
    payments = payments ? payments : "payments";
    int is_payment = record->input.len == strlen(payments) && memcmp(record->input.ptr, payments, record->input.len) == 0;
    weir_side side = is_payment ? WEIR_RIGHT : WEIR_LEFT;
    if (side == WEIR_LEFT) {
        static const char validated[] = "\"status\":\"VALIDATED\"";
        if (!record->value.present) return weir_fail("the record has no value (tombstone)");
        if (!memmem(record->value.ptr, record->value.len, validated, sizeof validated - 1)) return WEIR_OK;
    }
    const weir_match *matches;
    size_t count;
    bool on_time;
    int failed = weir_join_add(&paid, side, record, &matches, &count, &on_time);
    for (size_t i = 0; i < count; i++) email(record->key, "confirmed");
    return failed;
}

int weir_on_timer(const weir_timer *timer) {
    const weir_expired *expired;
    size_t count;
    bool ours;
    int failed = weir_join_expire(&paid, timer, &expired, &count, &ours);
    for (size_t i = 0; i < count; i++)
        if (expired[i].side == WEIR_LEFT && !expired[i].matched) email(expired[i].key, "payment missing");
    return failed;
}
