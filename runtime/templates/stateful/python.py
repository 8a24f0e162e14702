"""Counts records per key: for each record, emits its key and how many records with that key
came so far. The counts live in weir's state store, one per input partition, so input must be
keyed by what is counted (Kafka sends every record of a key to one partition)."""

from weir import Output, Processor, processor, state  # noqa: F401 - Processor is the export


@processor
def count(record):
    if record.key is None:
        return None
    n = state.get(record.key, 0) + 1
    state.put(record.key, n)
    return Output(str(n), key=record.key)
