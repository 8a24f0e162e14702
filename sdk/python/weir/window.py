"""Aggregation over event-time windows, tumbling or hopping, with a grace period for late
records, built on `weir.state` and `weir.timers` (the Rust SDK's `window` module, with the same
keys and values, so either language reads the other's windows).

    COUNTS = Windows.tumbling("counts", 10_000).grace(5_000)

    @processor(on_timer=emit)
    def count(record):
        COUNTS.aggregate(record, record.key, lambda n: n + 1, initial=0)

    def emit(timer):
        w = COUNTS.close(timer)
        return None if w is None else Output(str(w.value), key=w.key)

Each window `[start, end)` of a key keeps its aggregate in state until event time reaches
`end + grace`; then its timer fires and `close` hands over the final value once. A record
whose windows have all closed is late and left out.
"""

from weir import state, timers

_SIGN = 1 << 63


def _time_key(at):
    return ((at & 0xFFFF_FFFF_FFFF_FFFF) ^ _SIGN).to_bytes(8, "big")


def _time_from(raw):
    n = int.from_bytes(raw, "big") ^ _SIGN
    return n - (1 << 64) if n >= _SIGN else n


class Window:
    """A closed window: key (bytes), start (inclusive), end (exclusive), and its value."""

    __slots__ = ("key", "start", "end", "value")

    def __init__(self, key, start, end, value):
        self.key, self.start, self.end, self.value = key, start, end, value


class Windows:
    """A family of windows: size, how far apart they start, and grace, in milliseconds."""

    def __init__(self, name, size, advance, grace=0):
        self.name, self.size, self.advance, self._grace = name, size, advance, grace
        self._prefix = f"weir.window/{name}/".encode("utf-8")

    @classmethod
    def tumbling(cls, name, size_ms):
        return cls(name, size_ms, size_ms)

    @classmethod
    def hopping(cls, name, size_ms, advance_ms):
        return cls(name, size_ms, advance_ms)

    def grace(self, grace_ms):
        """These windows, kept open for records up to `grace_ms` later than their end."""
        return Windows(self.name, self.size, self.advance, grace_ms)

    def starts(self, timestamp):
        """The starts of the windows that contain `timestamp`, oldest first."""
        size, advance = max(self.size, 1), max(self.advance, 1)
        last = timestamp // advance * advance
        first = last - (size - 1) // advance * advance
        return [s for s in range(first, last + 1, advance) if s + size > timestamp]

    def aggregate(self, record, key, fold, initial=None):
        """Folds `record` into the aggregate of `key` in each of its windows still open
        (`fold(aggregate) -> aggregate`, starting from `initial`); returns how many took it,
        0 when it came too late for all. A record without a timestamp is an error."""
        if record.timestamp is None:
            raise ValueError(f"window `{self.name}`: the record has no timestamp")
        key = key.encode("utf-8") if isinstance(key, str) else (key or b"")
        now = timers.event_time()
        now = record.timestamp if now is None else now
        taken = 0
        for start in self.starts(record.timestamp):
            closes = start + self.size + self._grace
            if closes <= now:
                continue
            k = self._prefix + _time_key(start) + key
            state.put(k, fold(state.get(k, initial)))
            timers.set(timers.EVENT_TIME, closes, k)
            taken += 1
        return taken

    def close(self, timer):
        """The `Window` the timer closes, taken out of state; None for other timers."""
        if not timer.key.startswith(self._prefix) or len(timer.key) < len(self._prefix) + 8:
            return None
        rest = timer.key[len(self._prefix) :]
        start = _time_from(rest[:8])
        raw = state.get_bytes(timer.key)
        if raw is None:
            return None
        value = state.get(timer.key)
        state.delete(timer.key)
        return Window(rest[8:], start, start + self.size, value)
