"""Enriches each order with its customer's name from the `customers` table (a topic weir keeps
as a local map, `[tables.customers]` in pipeline.toml). Orders are keyed by customer id."""

from weir import Processor, processor, table  # noqa: F401 - Processor is the export


@processor
def enrich(record):
    name = table.get("customers", record.key) if record.key is not None else None
    name = name if name is not None else "an unknown customer"
    return record.map_value(lambda order: order + f" for {name}".encode())
