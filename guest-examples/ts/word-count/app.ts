// Counts words across all records; for every word seen, emits the word as key and its running
// count as value.
import { Output, processor as weirProcessor, state, type Record } from "weir";

export const processor = weirProcessor((record: Record) => {
  const outputs: Output[] = [];
  for (const word of record.text().split(/\s+/).filter(Boolean)) {
    const lower = word.toLowerCase();
    const count = state.get<number>(lower, 0) + 1;
    state.put(lower, count);
    outputs.push(new Output(String(count), { key: lower }));
  }
  return outputs;
});
