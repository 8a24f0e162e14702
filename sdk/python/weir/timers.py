"""Timers: have weir call the processor's `on_timer` function at an event time or a wall-clock
time, for a key.

    from weir import Processor, TimerHandler, processor, timers   # both exports

    @processor(on_timer=expire)
    def watch(record):
        timers.set(timers.EVENT_TIME, record.timestamp + 60_000, record.key)

weir keeps timers in the processor's state store, so they survive crashes and move with the
partition; under exactly-once each fires exactly once, with its handler's outputs and state
changes. Event time is the partition's largest record timestamp so far; a timer fires once a
record at or past its time has been processed. A component that sets timers imports
`TimerHandler` from weir, so `weir build` makes it a `timed-processor`.
"""

from weir._host import timers as _host
from weir._host import types
from weir.state import _key

EVENT_TIME = types.Clock.EVENT_TIME
WALL_CLOCK = types.Clock.WALL_CLOCK

# The host's event time for the current call (asked for on first use), and the largest record
# timestamp of the current batch so far.
_host_time = None
_batch_time = -1


def set(clock, at, key):  # noqa: A001 - the WIT's name
    """Sets a timer for `key` at `at` (ms since the Unix epoch) on `clock`; the same clock,
    time and key again keeps one timer."""
    _host.set(clock, int(at), _key(key))


def cancel(clock, at, key):
    """Removes the timer for `key` at `at` on `clock`, if there is one."""
    _host.cancel(clock, int(at), _key(key))


def event_time():
    """The partition's event time, counting the current batch's records up to the one being
    processed; None before any timestamped record."""
    global _host_time
    if _host_time is None:
        _host_time = _host.event_time()
    now = max(_host_time, _batch_time)
    return None if now < 0 else now


def _begin_call():
    global _host_time, _batch_time
    _host_time, _batch_time = None, -1
