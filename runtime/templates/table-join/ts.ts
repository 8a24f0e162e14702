// Enriches each order with its customer's name from the `customers` table (a topic weir keeps as
// a local map, `[tables.customers]` in pipeline.toml). Orders are keyed by customer id.
import { processor as weirProcessor, table, type Record } from "weir";

export const processor = weirProcessor((record: Record) => {
  const name = record.key === null ? null : table.get<string | null>("customers", record.key, null);
  const who = name ?? "an unknown customer";
  return record.mapValue((order) => new TextEncoder().encode(new TextDecoder().decode(order) + ` for ${who}`));
});
