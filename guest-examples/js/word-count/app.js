// Counts words across all records; for every word seen, emits the word as key and its running
// count as value.
import { Output, processor as weirProcessor, state } from "weir";

export const processor = weirProcessor((record) => {
  const outputs = [];
  for (const word of record.text().split(/\s+/).filter(Boolean)) {
    const lower = word.toLowerCase();
    const count = state.get(lower, 0) + 1;
    state.put(lower, count);
    outputs.push(new Output(String(count), { key: lower }));
  }
  return outputs;
});
