"""The orders' notification step, as the Rust one: joins each validated order with its payment
within 10 minutes of event time (1 minute of grace) and emails once per order."""

from weir import Output, Processor, TimerHandler, config, processor  # noqa: F401 - the exports
from weir.join import LEFT, RIGHT, Join

PAID = Join("order-payment", 600_000).grace(60_000)


def email(order, status):
    return Output(f'{{"order_id":"{order.decode()}","email":"{status}"}}', key=order)


def expire(timer):
    return [email(e.key, "payment missing") for e in PAID.expire(timer) or [] if e.side == LEFT and not e.matched]


@processor(config=["payments"], on_timer=expire)
def notify(record):
    side = RIGHT if record.input == (config("payments") or "payments") else LEFT
    if side == LEFT and '"status":"VALIDATED"' not in record.text():
        return None
    return [email(record.key, "confirmed") for _ in PAID.add(side, record) or []]
