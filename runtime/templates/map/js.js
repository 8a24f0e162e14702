// Uppercases every value; keys, headers and timestamps pass through.
import * as weir from "weir";

export const processor = weir.processor((record) => record.mapValue(weir.asciiUpper));
