// Uppercases every value; keys, headers and timestamps pass through.
import * as weir from "weir";

// ASCII only, like the Rust example.
export const processor = weir.processor((record: weir.Record) => record.mapValue(weir.asciiUpper));
