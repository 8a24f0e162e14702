"""Lookups in the pipeline's tables: topics replayed from their start into local maps by key,
kept current (`[tables.<name>]` in the pipeline file). Values are decoded from JSON, as table
topics usually hold JSON; `get_bytes` returns them raw."""

from weir._host import tables as _host
from weir.state import _decode, _key


def get(name, key, default=None):
    """The value under `key` in table `name`, decoded from JSON, or `default`."""
    raw = _host.get(name, _key(key))
    return default if raw is None else _decode(key, raw)


def get_bytes(name, key):
    """The raw value under `key` in table `name`, or None."""
    return _host.get(name, _key(key))
