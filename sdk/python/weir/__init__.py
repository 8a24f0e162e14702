"""weir's Python SDK: write a stream processor as one function per record.

    from weir import Processor, processor   # Processor is the export weir calls

    @processor
    def uppercase(record):
        return record.map_value(bytes.upper)

Build it with `weir build DIR` (componentize-py underneath). The function receives a `Record`
and returns an `Output`, a list of them, or None. `@processor(on_timer=f)` names the function
weir calls with each timer that fires (see `weir.timers`, and `weir.window` for windows); such
an app imports `TimerHandler` too, the second export. An exception fails the batch with a
processing error that names the record; weir commits nothing of a failed batch.

This module turns weir's columnar batches (see wit/processor.wit) into records and outputs
back into columns, so user code never sees them.
"""

from array import array

from weir import log, state, table, timers
from weir._host import Err, types

__all__ = ["Output", "Processor", "Record", "TimerHandler", "config", "log", "processor", "state", "table", "timers"]

_ABSENT = 0xFFFF_FFFF
_RECORD_STRIDE = 6
_HEADER_STRIDE = 4

_function = None
_on_timer = None
_accepted = ()
_config = {}


def processor(function=None, *, config=(), on_timer=None):
    """Registers the per-record function; `config` lists the configuration keys it accepts,
    `on_timer` the function called with each timer that fires.

    Use as `@processor` or `@processor(config=["threshold"], on_timer=expire)`.
    """

    def register(f):
        global _function, _accepted, _on_timer
        if _function is not None and _function is not f:
            raise RuntimeError(f"a second @processor ({f.__name__}); a component has one")
        _function, _accepted, _on_timer = f, tuple(config), on_timer
        return f

    return register(function) if function is not None else register


def config(key):
    """The value given for a configuration key (`--config key=value`), or None."""
    return _config.get(key)


class _Columns:
    """A batch's packed number columns, read in place (`memoryview.cast`, no copy)."""

    __slots__ = ("batch", "records", "headers", "offsets", "timestamps", "data")

    def __init__(self, batch):
        self.batch = batch
        self.records = memoryview(batch.records).cast("I")
        self.headers = memoryview(batch.headers).cast("I")
        self.offsets = memoryview(batch.offsets).cast("q")
        self.timestamps = memoryview(batch.timestamps).cast("q")
        self.data = batch.data


class Record:
    """One input record. `key` and `value` are bytes, or None when absent (a value of None is
    a tombstone); `timestamp` is milliseconds since the Unix epoch, or None."""

    __slots__ = ("_columns", "index", "key", "value", "_first_header", "_header_count")

    def __init__(self, columns, index):
        records = columns.records
        at = index * _RECORD_STRIDE
        data = columns.data
        self._columns = columns
        self.index = index
        key_at, key_len, value_at, value_len, self._first_header, self._header_count = records[at : at + _RECORD_STRIDE]
        self.key = None if key_len == _ABSENT else data[key_at : key_at + key_len]
        self.value = None if value_len == _ABSENT else data[value_at : value_at + value_len]

    @property
    def offset(self):
        return self._columns.offsets[self.index]

    @property
    def timestamp(self):
        timestamp = self._columns.timestamps[self.index]
        return None if timestamp < 0 else timestamp

    @property
    def topic(self):
        return self._columns.batch.topic

    @property
    def partition(self):
        return self._columns.batch.partition

    @property
    def input(self):
        return self._columns.batch.input

    @property
    def headers(self):
        """The headers as (name, value) pairs, in order; names may repeat."""
        if not self._header_count:
            return []
        columns, data = self._columns.headers, self._columns.data
        pairs = []
        for h in range(self._first_header, self._first_header + self._header_count):
            n, nl, v, vl = columns[h * _HEADER_STRIDE : h * _HEADER_STRIDE + _HEADER_STRIDE]
            name = data[n : n + nl].decode("utf-8", errors="replace")
            pairs.append((name, None if vl == _ABSENT else data[v : v + vl]))
        return pairs

    def header(self, name):
        """The value of the first header called `name`, or None."""
        return next((v for n, v in self.headers if n == name), None)

    def text(self):
        """The value as a str; an error if it is a tombstone or not UTF-8."""
        if self.value is None:
            raise ValueError("the record has no value (tombstone)")
        return self.value.decode("utf-8")

    def key_text(self):
        """The key as a str, or None without a key."""
        return None if self.key is None else self.key.decode("utf-8")

    def map_value(self, f):
        """An output like this record (same key, headers and timestamp) with the value mapped
        by `f`; a tombstone stays a tombstone."""
        value = None if self.value is None else _bytes(f(self.value), "value")
        return Output._like(self, value)

    def forward(self):
        """An output identical to this record, for the default output."""
        return self.map_value(lambda value: value)

    def __repr__(self):
        return f"Record(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, key={self.key!r})"


def _bytes(value, what):
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"an output's {what} must be bytes, str or None, not {type(value).__name__}")


def _header_value(name, value):
    if value is None:
        raise TypeError(f"header {name!r} has no value; a header value is bytes or str")
    return _bytes(value, f"header {name!r}")


class Output:
    """One record to produce. `value` None is a tombstone. `topic` names a configured output
    (None: the default one). `timestamp` None takes the timestamp of the record it answers."""

    __slots__ = ("value", "key", "topic", "headers", "timestamp", "source")

    def __init__(self, value, *, key=None, topic=None, headers=(), timestamp=None, source=None):
        self.value = _bytes(value, "value")
        self.key = _bytes(key, "key")
        self.topic = topic
        self.headers = [(name, _header_value(name, v)) for name, v in headers]
        self.timestamp = timestamp
        self.source = source

    @classmethod
    def _like(cls, record, value):
        """Key, headers and source of `record`, with this value (already bytes or None)."""
        o = cls.__new__(cls)
        o.value, o.key, o.topic, o.timestamp, o.source = value, record.key, None, None, record
        o.headers = record.headers
        return o

    def __repr__(self):
        return f"Output({self.value!r}, key={self.key!r}, topic={self.topic!r})"


class _Sink:
    """Outputs in weir's packed columns (`array`s, little-endian like wasm)."""

    __slots__ = ("records", "sources", "timestamps", "headers", "data", "source")

    def __init__(self):
        self.records, self.sources, self.headers = array("I"), array("I"), array("I")
        self.timestamps = array("q")
        self.data = bytearray()
        self.source = 0

    def push(self, o):
        if type(o) is not Output:
            raise TypeError(f"a processor returns an Output, a list of Outputs or None, not {type(o).__name__}")
        data = self.data
        headers = o.headers
        first_header = len(self.headers) // _HEADER_STRIDE
        for name, value in headers:
            name = name.encode("utf-8")
            at = len(data)
            data += name
            data += value
            self.headers.extend((at, len(name), at + len(name), len(value)))
        row = [0, _ABSENT, 0, _ABSENT, 0, _ABSENT, first_header, len(headers)]
        if o.topic is not None:
            topic = o.topic.encode("utf-8")
            row[0], row[1] = len(data), len(topic)
            data += topic
        if o.key is not None:
            row[2], row[3] = len(data), len(o.key)
            data += o.key
        if o.value is not None:
            row[4], row[5] = len(data), len(o.value)
            data += o.value
        self.records.extend(row)
        self.sources.append(self.source if o.source is None else o.source.index)
        self.timestamps.append(-1 if o.timestamp is None else o.timestamp)

    def emit(self, result):
        if result is None:
            return
        if type(result) is Output:
            self.push(result)
            return
        if isinstance(result, (bytes, str)):
            raise TypeError("a processor returns Output(value), not a bare value")
        for o in result:
            self.push(o)

    def finish(self):
        return types.Outputs(
            self.records.tobytes(), self.sources.tobytes(), self.timestamps.tobytes(), self.headers.tobytes(), bytes(self.data)
        )


def _describe(error):
    return f"{type(error).__name__}: {error}"


class Processor:
    """The component's `processor` export; weir calls it, user code does not."""

    def init(self, config):
        unknown = [k for k, _ in config if k not in _accepted]
        if unknown:
            accepts = f"this processor accepts: {', '.join(_accepted)}" if _accepted else "this processor takes no configuration"
            raise Err(f"unknown config key `{unknown[0]}`; {accepts}")
        _config.clear()
        _config.update(config)
        if _function is None:
            raise Err("no function is registered with @weir.processor")

    def process(self, batch):
        sink = _Sink()
        columns = _Columns(batch)
        function = _function
        # With timers, event time moves record by record (`timers.event_time()`).
        stamps = columns.timestamps if _on_timer is not None else None
        timers._begin_call()
        for index in range(len(columns.offsets)):
            sink.source = index
            if stamps is not None and stamps[index] > timers._batch_time:
                timers._batch_time = stamps[index]
            try:
                sink.emit(function(Record(columns, index)))
            except Exception as error:  # noqa: BLE001 - any failure fails the batch, located
                log.error(f"record {index}: {_describe(error)}")
                raise Err(types.ProcessingError(index, _describe(error))) from error
        return sink.finish()


class TimerHandler:
    """The component's `timer-handler` export (world `timed-processor`); weir calls it."""

    def on_timer(self, fired):
        if _on_timer is None:
            raise Err(types.ProcessingError(0, "a timer fired, but no function handles timers: @processor(on_timer=...)"))
        sink = _Sink()
        timers._begin_call()
        for index, timer in enumerate(fired):
            sink.source = index
            try:
                sink.emit(_on_timer(timer))
            except Exception as error:  # noqa: BLE001 - any failure fails the timers, located
                log.error(f"timer {index} (at {timer.at}): {_describe(error)}")
                raise Err(types.ProcessingError(index, _describe(error))) from error
        return sink.finish()
