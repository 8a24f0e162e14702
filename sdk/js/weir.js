// weir's JavaScript SDK: write a stream processor as one function per record.
//
//     import * as weir from "weir";
//
//     export const processor = weir.processor((record) => record.mapValue(weir.asciiUpper));
//
// Build it with `weir build DIR` (componentize-js underneath). The function receives a Record
// and returns an Output, an array of them, or undefined. A thrown exception fails the batch with
// a processing error that names the record; weir commits nothing of a failed batch.
//
// This module turns weir's columnar batches (see wit/processor.wit) into records and outputs
// back into columns, so user code never sees them.

import * as host from "weir:processor/state@0.1.0";
import { log as hostLog } from "weir:processor/log@0.1.0";

const ABSENT = 0xffffffff;
const RECORD_STRIDE = 6;
const HEADER_STRIDE = 4;
const PAGE = 256;
const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossy = new TextDecoder("utf-8");

let configuration = new Map();

/** The value given for a configuration key (`--config key=value`), or undefined. */
export function config(key) {
  return configuration.get(key);
}

function describe(error) {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * Turns a per-record function into the component's `processor` export:
 * `export const processor = weir.processor(fn, { config: ["key"] })`.
 * `config` lists the configuration keys the processor accepts; others are refused at start.
 */
export function processor(fn, { config: accepted = [] } = {}) {
  return {
    init(pairs) {
      const unknown = pairs.find(([key]) => !accepted.includes(key));
      if (unknown) {
        const accepts = accepted.length
          ? `this processor accepts: ${accepted.join(", ")}`
          : "this processor takes no configuration";
        return { tag: "err", val: `unknown config key \`${unknown[0]}\`; ${accepts}` };
      }
      configuration = new Map(pairs);
      return { tag: "ok", val: undefined };
    },
    process(batch) {
      const sink = new Sink(batch.offsets.length, batch.data.length);
      for (let index = 0; index < batch.offsets.length; index++) {
        sink.source = index;
        try {
          sink.emit(fn(new Record(batch, index)));
        } catch (error) {
          log.error(`record ${index}: ${describe(error)}`);
          return { tag: "err", val: { record: index, message: describe(error) } };
        }
      }
      return { tag: "ok", val: sink.finish() };
    },
  };
}

function slice(data, at, len) {
  return len === ABSENT ? null : data.subarray(at, at + len);
}

/**
 * One input record. `key` and `value` are Uint8Arrays, or null when absent (a null value is a
 * tombstone); `timestamp` is milliseconds since the Unix epoch, or null.
 */
export class Record {
  constructor(batch, index) {
    const at = index * RECORD_STRIDE;
    const columns = batch.records;
    this.batch = batch;
    this.index = index;
    this.key = slice(batch.data, columns[at], columns[at + 1]);
    this.value = slice(batch.data, columns[at + 2], columns[at + 3]);
  }

  get topic() {
    return this.batch.topic;
  }

  get partition() {
    return this.batch.partition;
  }

  get input() {
    return this.batch.input;
  }

  get offset() {
    return Number(this.batch.offsets[this.index]);
  }

  get timestamp() {
    const millis = Number(this.batch.timestamps[this.index]);
    return millis < 0 ? null : millis;
  }

  /** The headers as [name, value] pairs, in order; names may repeat. */
  get headers() {
    const { headers: columns, data, records } = this.batch;
    const first = records[this.index * RECORD_STRIDE + 4];
    const count = records[this.index * RECORD_STRIDE + 5];
    const pairs = [];
    for (let h = first; h < first + count; h++) {
      const at = h * HEADER_STRIDE;
      const name = lossy.decode(data.subarray(columns[at], columns[at] + columns[at + 1]));
      pairs.push([name, slice(data, columns[at + 2], columns[at + 3])]);
    }
    return pairs;
  }

  /** The value of the first header called `name`, or undefined. */
  header(name) {
    return this.headers.find(([n]) => n === name)?.[1];
  }

  /** The value as a string; throws if it is a tombstone or not UTF-8. */
  text() {
    if (this.value === null) throw new Error("the record has no value (tombstone)");
    return utf8.decode(this.value);
  }

  /** The key as a string, or null without a key. */
  keyText() {
    return this.key === null ? null : utf8.decode(this.key);
  }

  /** An output like this record (same key, headers and timestamp) with the value mapped by
   * `f`; a tombstone stays a tombstone. */
  mapValue(f) {
    const value = this.value === null ? null : f(this.value);
    return new Output(value, { key: this.key, headers: this.headers, source: this });
  }

  /** An output identical to this record, for the default output. */
  forward() {
    return this.mapValue((value) => value);
  }
}

// The bindings make their arrays in another realm, so `instanceof Uint8Array` would miss them.
function isBytes(value) {
  return ArrayBuffer.isView(value) && value.BYTES_PER_ELEMENT === 1;
}

function bytes(value, what) {
  if (value === null || value === undefined) return null;
  if (isBytes(value)) return value;
  if (typeof value === "string") return encoder.encode(value);
  throw new TypeError(`an output's ${what} must be a Uint8Array, a string or null, not ${typeof value}`);
}

/**
 * One record to produce. A null value is a tombstone. `topic` names a configured output
 * (undefined: the default one). Without `timestamp`, it takes the timestamp of the record it
 * answers.
 */
export class Output {
  constructor(value, { key = null, topic = null, headers = [], timestamp = null, source = null } = {}) {
    this.value = bytes(value, "value");
    this.key = bytes(key, "key");
    this.topic = topic;
    this.headers = headers.map(([name, v]) => [name, bytes(v, `header ${name}`)]);
    this.timestamp = timestamp;
    this.source = source;
  }
}

/** ASCII-only uppercase of bytes, like Rust's `to_ascii_uppercase`. */
export function asciiUpper(value) {
  return value.map((b) => (b >= 0x61 && b <= 0x7a ? b - 0x20 : b));
}

/** A growable typed array. */
class Column {
  constructor(Type, capacity) {
    this.array = new Type(Math.max(capacity, 16));
    this.length = 0;
  }

  reserve(extra) {
    if (this.length + extra > this.array.length) {
      const bigger = new this.array.constructor(Math.max(this.array.length * 2, this.length + extra));
      bigger.set(this.array.subarray(0, this.length));
      this.array = bigger;
    }
  }

  push(...values) {
    this.reserve(values.length);
    for (const v of values) this.array[this.length++] = v;
  }

  finish() {
    return this.array.subarray(0, this.length);
  }
}

/** Outputs in weir's columns. */
class Sink {
  constructor(records, bytes) {
    this.records = new Column(Uint32Array, records * 8);
    this.sources = new Column(Uint32Array, records);
    this.timestamps = new Column(BigInt64Array, records);
    this.headers = new Column(Uint32Array, 0);
    this.data = new Column(Uint8Array, bytes);
    this.source = 0;
  }

  append(b) {
    if (b === null) return [0, ABSENT];
    const at = this.data.length;
    this.data.reserve(b.length);
    this.data.array.set(b, at);
    this.data.length += b.length;
    return [at, b.length];
  }

  push(o) {
    if (!(o instanceof Output)) {
      throw new TypeError(`a processor returns an Output, an array of Outputs or undefined, not ${typeof o}`);
    }
    const firstHeader = this.headers.length / HEADER_STRIDE;
    for (const [name, value] of o.headers) {
      this.headers.push(...this.append(encoder.encode(name)), ...this.append(value));
    }
    const topic = o.topic === null || o.topic === undefined ? null : encoder.encode(o.topic);
    this.records.push(...this.append(topic), ...this.append(o.key), ...this.append(o.value));
    this.records.push(firstHeader, o.headers.length);
    this.sources.push(o.source === null ? this.source : o.source.index);
    this.timestamps.push(BigInt(o.timestamp === null ? -1 : o.timestamp));
  }

  emit(result) {
    if (result === undefined || result === null) return;
    if (Array.isArray(result)) {
      for (const o of result) this.push(o);
    } else {
      this.push(result);
    }
  }

  finish() {
    return {
      records: this.records.finish(),
      sources: this.sources.finish(),
      timestamps: this.timestamps.finish(),
      headers: this.headers.finish(),
      data: this.data.finish(),
    };
  }
}

function key(k) {
  if (isBytes(k)) return k;
  if (typeof k === "string") return encoder.encode(k);
  throw new TypeError(`a state key is a string or a Uint8Array, not ${typeof k}`);
}

function decode(k, raw) {
  try {
    return JSON.parse(utf8.decode(raw));
  } catch (error) {
    throw new Error(`state under key ${JSON.stringify(lossy.decode(key(k)))} does not decode: ${describe(error)}`);
  }
}

function successor(prefix) {
  const end = Array.from(prefix);
  while (end.length) {
    const last = end.pop();
    if (last < 0xff) return Uint8Array.from([...end, last + 1]);
  }
  return undefined;
}

function* scanRange(start, end) {
  let from = key(start);
  const to = end === undefined || end === null ? undefined : key(end);
  for (;;) {
    const page = host.scan(from, to, PAGE);
    for (const entry of page) yield [entry.key, decode(entry.key, entry.value)];
    if (page.length < PAGE) return;
    const last = page[page.length - 1].key;
    from = new Uint8Array(last.length + 1);
    from.set(last);
  }
}

/**
 * The processor's key-value state, private to it and to the input partition being processed.
 * Values are stored as JSON, like the Rust SDK's typed state, so processors in any language read
 * the same state. Keys are strings (stored as UTF-8) or Uint8Arrays. Writes are visible at once
 * and become durable with the batch's outputs; a failed batch leaves the state as it was.
 */
export const state = {
  /** The value under `k`, decoded from JSON, or `fallback`. */
  get(k, fallback = undefined) {
    const raw = host.get(key(k));
    return raw === undefined || raw === null ? fallback : decode(k, raw);
  },
  /** Stores `value` (anything JSON.stringify takes) under `k`. */
  put(k, value) {
    host.put(key(k), encoder.encode(JSON.stringify(value)));
  },
  /** Removes `k`. */
  delete(k) {
    host.delete(key(k));
  },
  /** The raw bytes under `k`, or undefined. */
  getBytes(k) {
    return host.get(key(k)) ?? undefined;
  },
  /** Stores raw bytes under `k`. */
  putBytes(k, value) {
    host.put(key(k), value);
  },
  /** [key, value] pairs with start <= key < end (no bound without end), values decoded. */
  scanRange,
  /** [key, value] pairs whose key starts with `prefix`, values decoded, in key order. */
  scanPrefix(prefix) {
    const start = key(prefix);
    return scanRange(start, successor(start));
  },
};

/** Log lines into weir's structured logs, tagged with processor, topic and partition. */
export const log = Object.fromEntries(
  ["trace", "debug", "info", "warn", "error"].map((level) => [level, (message) => hostLog(level, String(message))]),
);
