"""Stream-stream joins within a time window, with a grace period, built on `weir.state` and
`weir.timers` (the Rust SDK's `join` module, with the same keys and values).

    PAID = Join("order-payment", 600_000).grace(60_000)

    @processor(on_timer=expire)
    def paid_orders(record):
        side = RIGHT if record.input == "payments" else LEFT
        return [record.map_value(lambda _: m.value) for m in PAID.add(side, record) or []]

    def expire(timer):
        PAID.expire(timer)

A record at `t` joins the other side's records of its key at `t ± within`, and leaves the
buffer when event time reaches `t + within + grace` (its timer: pass it to `expire`, which says
whether the record ever found a partner, for left and outer joins). A record older than that on
arrival is late: `add` returns None.
"""

import struct

from weir import state, timers
from weir.window import _time_from, _time_key

LEFT, RIGHT = "L", "R"


class Match:
    """A buffered record of the other side that the new record joins."""

    __slots__ = ("timestamp", "value")

    def __init__(self, timestamp, value):
        self.timestamp, self.value = timestamp, value


class Expired:
    """A buffered record whose time to join is over, and whether it ever joined."""

    __slots__ = ("side", "key", "timestamp", "value", "matched")

    def __init__(self, side, key, timestamp, value, matched):
        self.side, self.key, self.timestamp, self.value, self.matched = side, key, timestamp, value, matched


def _encode(buffered):
    return b"".join(bytes([matched]) + struct.pack(">I", len(value)) + value for matched, value in buffered)


def _decode(raw, key):
    buffered, at = [], 0
    while at < len(raw):
        if at + 5 > len(raw):
            raise ValueError(f"join buffer under {key!r} is corrupt")
        (length,) = struct.unpack(">I", raw[at + 1 : at + 5])
        buffered.append((raw[at] == 1, raw[at + 5 : at + 5 + length]))
        at += 5 + length
    return buffered


class Join:
    """A join of two streams by key, within `within_ms` of each other."""

    def __init__(self, name, within_ms, grace_ms=0):
        self.name, self.within, self._grace = name, within_ms, grace_ms
        self._head = f"weir.join/{name}/".encode("utf-8")

    def grace(self, grace_ms):
        """This join, keeping records buffered `grace_ms` longer for late partners."""
        return Join(self.name, self.within, grace_ms)

    def _prefix(self, side, key):
        return self._head + side.encode() + struct.pack(">I", len(key)) + key

    def add(self, side, record):
        """Buffers `record` on `side` (LEFT or RIGHT) and returns the other side's buffered
        records of its key within the window, oldest first; None when it came too late."""
        if record.key is None or record.timestamp is None:
            raise ValueError(f"join `{self.name}`: the record needs a key and a timestamp")
        key, ts = bytes(record.key), record.timestamp
        expires = ts + self.within + self._grace
        now = timers.event_time()
        if now is not None and expires <= now:
            return None
        other = self._prefix(RIGHT if side == LEFT else LEFT, key)
        matches = []
        for k, raw in state.scan_range_bytes(other + _time_key(ts - self.within), other + _time_key(ts + self.within + 1)):
            buffered = _decode(raw, k)
            if not all(matched for matched, _ in buffered):
                state.put_bytes(k, _encode([(True, value) for _, value in buffered]))
            matches.extend(Match(_time_from(k[len(other) :]), value) for _, value in buffered)
        own = self._prefix(side, key) + _time_key(ts)
        raw = state.get_bytes(own)
        buffered = [] if raw is None else _decode(raw, own)
        buffered.append((bool(matches), bytes(record.value or b"")))
        state.put_bytes(own, _encode(buffered))
        timers.set(timers.EVENT_TIME, expires, own)
        return matches

    def expire(self, timer):
        """The buffered records the timer expires (a list of `Expired`), taken out of state;
        None for other timers."""
        key = timer.key
        if not key.startswith(self._head) or len(key) < len(self._head) + 5:
            return None
        rest = key[len(self._head) :]
        side = rest[:1].decode()
        (length,) = struct.unpack(">I", rest[1:5])
        if side not in (LEFT, RIGHT) or len(rest) != 5 + length + 8:
            return None
        raw = state.get_bytes(key)
        if raw is None:
            return []
        state.delete(key)
        ts = _time_from(rest[5 + length :])
        return [Expired(side, rest[5 : 5 + length], ts, value, matched) for matched, value in _decode(raw, key)]
