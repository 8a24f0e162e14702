// Counts records per key in 10-second tumbling windows of event time, waiting 5 seconds for late
// records; emits each window's count once, when the window closes (as the Rust one does).
import { Output, Windows, log, processor as weirProcessor, type Record, type Timer } from "weir";
export { timerHandler } from "weir";

const WINDOWS = Windows.tumbling("counts", 10_000).grace(5_000);

function emit(timer: Timer): Output | undefined {
  const w = WINDOWS.close<number>(timer);
  if (w !== null) return new Output(`{"start":${w.start},"end":${w.end},"count":${w.value}}`, { key: w.key });
}

export const processor = weirProcessor(
  (record: Record) => {
    if (WINDOWS.aggregate<number>(record, record.key, (n) => n + 1, 0) === 0) {
      log.warn(`late record at offset ${record.offset} left out`);
    }
  },
  { onTimer: emit },
);
