"""Uppercases every value; keys, headers and timestamps pass through."""

from weir import Processor, processor  # noqa: F401 - Processor is the export weir calls


@processor
def uppercase(record):
    return record.map_value(bytes.upper)
