"""The host's imports, from the bindings componentize-py generates from weir's WIT; off wasm
(unit tests with plain CPython) an in-memory stand-in, like the Rust SDK's native stub."""

try:
    from componentize_py_types import Err
    from wit_world.imports import log, state, tables, timers, types

    NATIVE = False
except ImportError:
    import bisect
    import sys
    from dataclasses import dataclass
    from enum import Enum

    NATIVE = True

    class Err(Exception):
        """Stand-in for componentize-py's `Err`: the failure case of a WIT result."""

        def __init__(self, value):
            super().__init__(value)
            self.value = value

    class types:  # noqa: N801 - mirrors the generated module
        class Clock(Enum):
            EVENT_TIME = 0
            WALL_CLOCK = 1

        @dataclass
        class Timer:
            clock: object
            at: int
            key: bytes

        @dataclass
        class Outputs:
            records: list
            sources: list
            timestamps: list
            headers: list
            data: bytes

        @dataclass
        class ProcessingError:
            record: object
            message: str

        @dataclass
        class Batch:
            input: str
            topic: str
            partition: int
            offsets: list
            timestamps: list
            records: list
            headers: list
            data: bytes

    class state:  # noqa: N801
        @dataclass
        class Entry:
            key: bytes
            value: bytes

        store = {}

        @staticmethod
        def get(key):
            return state.store.get(key)

        @staticmethod
        def put(key, value):
            state.store[key] = value

        @staticmethod
        def delete(key):
            state.store.pop(key, None)

        @staticmethod
        def scan(start, end, limit):
            keys = sorted(state.store)
            i = bisect.bisect_left(keys, start)
            chosen = [k for k in keys[i:] if end is None or k < end][:limit]
            return [state.Entry(k, state.store[k]) for k in chosen]

    class tables:  # noqa: N801
        store = {}

        @staticmethod
        def get(name, key):
            return tables.store.get((name, key))

        @staticmethod
        def set(name, key, value):
            """For unit tests: what `weir.table.get` finds off wasm."""
            tables.store[(name, key)] = value

    class timers:  # noqa: N801
        pending = set()
        now = -1

        @staticmethod
        def set(clock, at, key):
            timers.pending.add((clock.value, at, key))

        @staticmethod
        def cancel(clock, at, key):
            timers.pending.discard((clock.value, at, key))

        @staticmethod
        def event_time():
            return timers.now

        @staticmethod
        def take_due(clock, now):
            """For unit tests: removes and returns the timers on `clock` due at `now`, oldest first."""
            due = sorted(t for t in timers.pending if t[0] == clock.value and t[1] <= now)
            timers.pending.difference_update(due)
            return [types.Timer(clock, at, key) for _, at, key in due]

    class log:  # noqa: N801
        class Level:
            TRACE, DEBUG, INFO, WARN, ERROR = "trace", "debug", "info", "warn", "error"

        @staticmethod
        def log(level, message):
            print(f"[{level}] {message}", file=sys.stderr)
