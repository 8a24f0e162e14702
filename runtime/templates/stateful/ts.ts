// Counts records per key: for each record, emits its key and how many records with that key
// came so far. The counts live in weir's state store, one per input partition, so input must be
// keyed by what is counted (Kafka sends every record of a key to one partition).
import { Output, processor as weirProcessor, state, type Record } from "weir";

export const processor = weirProcessor((record: Record) => {
  if (record.key === null) return;
  const n = state.get<number>(record.key, 0) + 1;
  state.put(record.key, n);
  return new Output(String(n), { key: record.key });
});
