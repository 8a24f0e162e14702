// Uppercases every value; keys, headers and timestamps pass through.
import * as weir from "weir";

export const processor = weir.processor((record: weir.Record) => record.mapValue(weir.asciiUpper));
