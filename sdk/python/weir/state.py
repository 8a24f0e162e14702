"""The processor's key-value state, private to it and to the input partition being processed.

Values are stored as JSON, like the Rust SDK's typed state, so processors in any language read
the same state. Keys are str (stored as UTF-8) or bytes. Writes are visible at once and become
durable with the batch's outputs; a failed batch leaves the state as it was.
"""

import json

from weir._host import state as _host

_PAGE = 256


def _key(key):
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    raise TypeError(f"a state key is str or bytes, not {type(key).__name__}")


def _decode(key, raw):
    try:
        return json.loads(raw)
    except ValueError as error:
        raise ValueError(f"state under key {key!r} does not decode: {error}") from None


def get(key, default=None):
    """The value under `key`, decoded from JSON, or `default`."""
    raw = _host.get(_key(key))
    return default if raw is None else _decode(key, raw)


def put(key, value):
    """Stores `value` (anything json.dumps takes) under `key`."""
    _host.put(_key(key), json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def delete(key):
    """Removes `key`."""
    _host.delete(_key(key))


def get_bytes(key):
    """The raw bytes under `key`, or None."""
    return _host.get(_key(key))


def put_bytes(key, value):
    """Stores raw bytes under `key`."""
    _host.put(_key(key), bytes(value))


def _successor(prefix):
    end = bytearray(prefix)
    while end:
        last = end.pop()
        if last < 0xFF:
            end.append(last + 1)
            return bytes(end)
    return None


def scan_range(start, end=None):
    """(key, value) pairs, values decoded, with start <= key < end (no bound when end is None),
    in key order, fetched from the host a page at a time."""
    for key, raw in scan_range_bytes(start, end):
        yield key, _decode(key, raw)


def scan_range_bytes(start, end=None):
    """Like `scan_range`, with the values as raw bytes."""
    start, end = _key(start), None if end is None else _key(end)
    while True:
        page = _host.scan(start, end, _PAGE)
        for entry in page:
            yield entry.key, entry.value
        if len(page) < _PAGE:
            return
        start = page[-1].key + b"\x00"


def scan_prefix(prefix):
    """(key, value) pairs whose key starts with `prefix`, values decoded, in key order."""
    prefix = _key(prefix)
    return scan_range(prefix, _successor(prefix))
