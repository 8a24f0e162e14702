"""Counts records per key in 10-second tumbling windows of event time, waiting 5 seconds for
late records; emits each window's count once, when the window closes (as the Rust one does)."""

from weir import Output, Processor, TimerHandler, log, processor  # noqa: F401 - the exports
from weir.window import Windows

WINDOWS = Windows.tumbling("counts", 10_000).grace(5_000)


def emit(timer):
    w = WINDOWS.close(timer)
    if w is not None:
        return Output(f'{{"start":{w.start},"end":{w.end},"count":{w.value}}}', key=w.key)


@processor(on_timer=emit)
def count(record):
    if WINDOWS.aggregate(record, record.key, lambda n: n + 1, initial=0) == 0:
        log.warn(f"late record at offset {record.offset} left out")
