// weir's JavaScript SDK: write a stream processor as one function per record.
//
//     import * as weir from "weir";
//
//     export const processor = weir.processor((record) => record.mapValue(weir.asciiUpper));
//
// Build it with `weir build DIR` (componentize-js underneath). The function receives a Record
// and returns an Output, an array of them, or undefined. `weir.processor(fn, { onTimer })` names
// the function called with each timer that fires (see `timers`, and `Windows` for windows); such
// an app also has `export { timerHandler } from "weir";`, the second export. A thrown exception fails the batch with
// a processing error that names the record; weir commits nothing of a failed batch.
//
// This module turns weir's columnar batches (see wit/processor.wit) into records and outputs
// back into columns, so user code never sees them.

import * as host from "weir:processor/state@0.2.1";
import { log as hostLog } from "weir:processor/log@0.2.1";
import { get as tableGet } from "weir:processor/tables@0.2.1";
import * as hostTimers from "weir:processor/timers@0.2.1";

const ABSENT = 0xffffffff;
const RECORD_STRIDE = 6;
const HEADER_STRIDE = 4;
const PAGE = 256;
const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });
const lossy = new TextDecoder("utf-8");

let configuration = new Map();
let onTimerFn = null;
// The host's event time for the current call (asked for on first use), and the largest record
// timestamp of the current batch so far.
let hostTime = null;
let batchTime = -1;

function beginCall() {
  hostTime = null;
  batchTime = -1;
}

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
export function processor(fn, { config: accepted = [], onTimer = null } = {}) {
  onTimerFn = onTimer;
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
      const columns = new Columns(batch);
      const count = columns.offsets.length;
      const sink = new Sink(count, batch.data.length);
      // With timers, event time moves record by record (`timers.eventTime()`).
      const stamps = onTimerFn === null ? null : columns.timestamps;
      beginCall();
      for (let index = 0; index < count; index++) {
        sink.source = index;
        if (stamps !== null && Number(stamps[index]) > batchTime) batchTime = Number(stamps[index]);
        try {
          sink.emit(fn(new Record(columns, index)));
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

/** A view of packed little-endian numbers as a typed array, without a copy when aligned. */
function view(Type, bytes) {
  const aligned = bytes.byteOffset % Type.BYTES_PER_ELEMENT === 0 ? bytes : bytes.slice();
  return new Type(aligned.buffer, aligned.byteOffset, aligned.byteLength / Type.BYTES_PER_ELEMENT);
}

/** The bytes of a typed array, as the WIT's packed columns take them. */
function packed(array) {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/** A batch's packed number columns, read in place. */
class Columns {
  constructor(batch) {
    this.batch = batch;
    this.data = batch.data;
    this.records = view(Uint32Array, batch.records);
    this.headers = view(Uint32Array, batch.headers);
    this.offsets = view(BigInt64Array, batch.offsets);
    this.timestamps = view(BigInt64Array, batch.timestamps);
  }
}

/**
 * One input record. `key` and `value` are Uint8Arrays, or null when absent (a null value is a
 * tombstone); `timestamp` is milliseconds since the Unix epoch, or null.
 */
export class Record {
  constructor(columns, index) {
    const at = index * RECORD_STRIDE;
    const records = columns.records;
    this.columns = columns;
    this.index = index;
    this.key = slice(columns.data, records[at], records[at + 1]);
    this.value = slice(columns.data, records[at + 2], records[at + 3]);
  }

  get topic() {
    return this.columns.batch.topic;
  }

  get partition() {
    return this.columns.batch.partition;
  }

  get input() {
    return this.columns.batch.input;
  }

  get offset() {
    return Number(this.columns.offsets[this.index]);
  }

  get timestamp() {
    const millis = Number(this.columns.timestamps[this.index]);
    return millis < 0 ? null : millis;
  }

  /** The headers as [name, value] pairs, in order; names may repeat. */
  get headers() {
    const { headers: columns, data, records } = this.columns;
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
    const value = this.value === null ? null : bytes(f(this.value), "value");
    const hasHeaders = this.columns.records[this.index * RECORD_STRIDE + 5] !== 0;
    return output(value, this.key, null, hasHeaders ? this.headers : NO_HEADERS, null, this);
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
  constructor(value, options) {
    const { key = null, topic = null, headers = NO_HEADERS, timestamp = null, source = null } = options ?? {};
    this.value = bytes(value, "value");
    this.key = bytes(key, "key");
    this.topic = topic;
    this.headers = headers.length ? headers.map(([name, v]) => [name, headerValue(name, v)]) : NO_HEADERS;
    this.timestamp = timestamp;
    this.source = source;
  }
}

const NO_HEADERS = Object.freeze([]);

function headerValue(name, value) {
  if (value === null || value === undefined) {
    throw new TypeError(`header ${name} has no value; a header value is a Uint8Array or a string`);
  }
  return bytes(value, `header ${name}`);
}

/** An Output from parts already checked: the per-record fast path of `mapValue`. */
function output(value, key, topic, headers, timestamp, source) {
  const o = Object.create(Output.prototype);
  o.value = value;
  o.key = key;
  o.topic = topic;
  o.headers = headers;
  o.timestamp = timestamp;
  o.source = source;
  return o;
}

const latin1 = new TextDecoder("latin1");
const NON_ASCII = /[^\x00-\x7f]/;

/** ASCII-only uppercase of bytes, like Rust's `to_ascii_uppercase`. */
export function asciiUpper(value) {
  // The engine's own string functions beat a byte loop in the interpreter by far; for ASCII
  // text, toUpperCase is exactly the ASCII mapping.
  const text = latin1.decode(value);
  if (!NON_ASCII.test(text)) return encoder.encode(text.toUpperCase());
  const out = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) {
    const b = value[i];
    out[i] = b >= 0x61 && b <= 0x7a ? b - 0x20 : b;
  }
  return out;
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

  push2(a, b) {
    if (this.length + 2 > this.array.length) this.reserve(2);
    this.array[this.length] = a;
    this.array[this.length + 1] = b;
    this.length += 2;
  }

  push1(a) {
    if (this.length + 1 > this.array.length) this.reserve(1);
    this.array[this.length++] = a;
  }

  /** The packed bytes of what was pushed. */
  finish() {
    return packed(this.array.subarray(0, this.length));
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

  /** Appends `b` to the data and its (offset, length) to `column`. */
  append(column, b) {
    if (b === null) {
      column.push2(0, ABSENT);
      return;
    }
    const data = this.data;
    const at = data.length;
    if (at + b.length > data.array.length) data.reserve(b.length);
    data.array.set(b, at);
    data.length = at + b.length;
    column.push2(at, b.length);
  }

  push(o) {
    if (!(o instanceof Output)) {
      throw new TypeError(`a processor returns an Output, an array of Outputs or undefined, not ${typeof o}`);
    }
    const records = this.records;
    const headerCount = o.headers.length;
    const firstHeader = this.headers.length / HEADER_STRIDE;
    for (let h = 0; h < headerCount; h++) {
      this.append(this.headers, encoder.encode(o.headers[h][0]));
      this.append(this.headers, o.headers[h][1]);
    }
    this.append(records, o.topic === null || o.topic === undefined ? null : encoder.encode(o.topic));
    this.append(records, o.key);
    this.append(records, o.value);
    records.push2(firstHeader, headerCount);
    this.sources.push1(o.source === null ? this.source : o.source.index);
    this.timestamps.push1(o.timestamp === null ? -1n : BigInt(o.timestamp));
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
      data: this.data.array.subarray(0, this.data.length),
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
  const to = end === undefined || end === null ? undefined : key(end);
  for (const [k, raw] of scanBytes(key(start), to)) yield [k, decode(k, raw)];
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

/**
 * Lookups in the pipeline's tables: topics replayed from their start into local maps by key,
 * kept current (`[tables.<name>]` in the pipeline file). Values are decoded from JSON.
 */
export const table = {
  /** The value under `k` in table `name`, decoded from JSON, or `fallback`. */
  get(name, k, fallback = undefined) {
    const raw = tableGet(name, key(k));
    return raw === undefined || raw === null ? fallback : decode(k, raw);
  },
  /** The raw value under `k` in table `name`, or undefined. */
  getBytes(name, k) {
    return tableGet(name, key(k)) ?? undefined;
  },
};

/** Log lines into weir's structured logs, tagged with processor, topic and partition. */
export const log = Object.fromEntries(
  ["trace", "debug", "info", "warn", "error"].map((level) => [level, (message) => hostLog(level, String(message))]),
);

/**
 * Timers: weir calls the `onTimer` function given to `processor` at an event time or a
 * wall-clock time, for a key. weir keeps timers in the processor's state store (they survive
 * crashes and move with the partition); under exactly-once each fires exactly once, with its
 * handler's outputs and state changes. Times are milliseconds since the Unix epoch.
 */
export const timers = {
  EVENT_TIME: "event-time",
  WALL_CLOCK: "wall-clock",
  /** Sets a timer for key `k` at `at` on `clock`; the same clock, time and key keeps one. */
  set(clock, at, k) {
    hostTimers.set(clock, BigInt(at), key(k));
  },
  /** Removes the timer for `k` at `at` on `clock`, if there is one. */
  cancel(clock, at, k) {
    hostTimers.cancel(clock, BigInt(at), key(k));
  },
  /** The partition's event time, counting the current batch up to the record being processed;
   * null before any timestamped record. */
  eventTime() {
    if (hostTime === null) hostTime = s64(hostTimers.eventTime());
    const now = Math.max(hostTime, batchTime);
    return now < 0 ? null : now;
  },
};

// componentize-js 0.23 hands an s64 over as its unsigned 64 bits (-1 arrives as 2^64 - 1).
function s64(n) {
  return Number(BigInt.asIntN(64, BigInt(n)));
}

/** The component's `timer-handler` export: `export { timerHandler } from "weir";`. */
export const timerHandler = {
  onTimer(fired) {
    if (onTimerFn === null) {
      return { tag: "err", val: { record: 0, message: "a timer fired, but no function handles timers: weir.processor(fn, { onTimer })" } };
    }
    beginCall();
    const sink = new Sink(fired.length, 0);
    for (let index = 0; index < fired.length; index++) {
      const t = fired[index];
      sink.source = index;
      try {
        sink.emit(onTimerFn({ clock: t.clock, at: s64(t.at), key: t.key }));
      } catch (error) {
        log.error(`timer ${index} (at ${t.at}): ${describe(error)}`);
        return { tag: "err", val: { record: index, message: describe(error) } };
      }
    }
    return { tag: "ok", val: sink.finish() };
  },
};

const SIGN = 1n << 63n;

/** A time as 8 bytes whose order is time order (as in the Rust and Python SDKs). */
function timeKey(at) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(at)) ^ SIGN);
  return b;
}

function timeFrom(b) {
  return Number(BigInt.asIntN(64, new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0) ^ SIGN));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function startsWith(b, prefix) {
  return b.length >= prefix.length && prefix.every((x, i) => b[i] === x);
}

/**
 * Aggregation over event-time windows, tumbling or hopping, with a grace period, with the same
 * keys and values as the Rust and Python SDKs' windows. Each window of a key keeps its aggregate
 * in state until event time reaches its end plus the grace period; then its timer fires and
 * `close(timer)` hands over the final value once. A record whose windows all closed is left out.
 */
export class Windows {
  constructor(name, size, advance, grace = 0) {
    Object.assign(this, { name, size, advance, graceMs: grace, prefix: encoder.encode(`weir.window/${name}/`) });
  }

  static tumbling(name, sizeMs) {
    return new Windows(name, sizeMs, sizeMs);
  }

  static hopping(name, sizeMs, advanceMs) {
    return new Windows(name, sizeMs, advanceMs);
  }

  /** These windows, kept open for records up to `graceMs` later than their end. */
  grace(graceMs) {
    return new Windows(this.name, this.size, this.advance, graceMs);
  }

  /** The starts of the windows that contain `timestamp`, oldest first. */
  starts(timestamp) {
    const size = Math.max(this.size, 1);
    const advance = Math.max(this.advance, 1);
    const last = Math.floor(timestamp / advance) * advance;
    const out = [];
    for (let s = last - Math.floor((size - 1) / advance) * advance; s <= last; s += advance) {
      if (s + size > timestamp) out.push(s);
    }
    return out;
  }

  /** Folds `record` into the aggregate of key `k` in each of its windows still open
   * (`fold(aggregate) -> aggregate`, from `initial`); returns how many took it (0: too late). */
  aggregate(record, k, fold, initial = null) {
    if (record.timestamp === null) throw new Error(`window \`${this.name}\`: the record has no timestamp`);
    const now = timers.eventTime() ?? record.timestamp;
    let taken = 0;
    for (const start of this.starts(record.timestamp)) {
      const closes = start + this.size + this.graceMs;
      if (closes <= now) continue;
      const stateKey = concat(this.prefix, timeKey(start), k === null ? new Uint8Array() : key(k));
      state.put(stateKey, fold(state.get(stateKey, initial)));
      timers.set(timers.EVENT_TIME, closes, stateKey);
      taken++;
    }
    return taken;
  }

  /** The window `timer` closes, as { key, start, end, value }, taken out of state; null for
   * other timers. */
  close(timer) {
    if (!startsWith(timer.key, this.prefix) || timer.key.length < this.prefix.length + 8) return null;
    const rest = timer.key.subarray(this.prefix.length);
    if (state.getBytes(timer.key) === undefined) return null;
    const value = state.get(timer.key);
    state.delete(timer.key);
    const start = timeFrom(rest.subarray(0, 8));
    return { key: rest.slice(8), start, end: start + this.size, value };
  }
}

function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n);
  return b;
}

/** Buffered records as the Rust and Python SDKs store them: [matched][length: 4 bytes][value]. */
function encodeBuffered(buffered) {
  return concat(...buffered.flatMap(([matched, value]) => [Uint8Array.of(matched ? 1 : 0), u32(value.length), value]));
}

function decodeBuffered(raw, k) {
  const out = [];
  let at = 0;
  while (at < raw.length) {
    if (at + 5 > raw.length) throw new Error(`join buffer under ${JSON.stringify(lossy.decode(k))} is corrupt`);
    const length = new DataView(raw.buffer, raw.byteOffset + at + 1, 4).getUint32(0);
    out.push([raw[at] === 1, raw.slice(at + 5, at + 5 + length)]);
    at += 5 + length;
  }
  return out;
}

/** [key, raw value] pairs with start <= key < end, a page at a time. */
function* scanBytes(start, end) {
  let from = start;
  for (;;) {
    const page = host.scan(from, end, PAGE);
    for (const entry of page) yield [entry.key, entry.value];
    if (page.length < PAGE) return;
    const last = page[page.length - 1].key;
    from = new Uint8Array(last.length + 1);
    from.set(last);
  }
}

/**
 * A stream-stream join by key within `withinMs`, with a grace period, with the same keys and
 * values as the Rust and Python SDKs' joins. A record at `t` joins the other side's records of
 * its key at `t ± within`, and leaves the buffer when event time reaches `t + within + grace`
 * (its timer: pass it to `expire`, which says whether the record ever found a partner).
 */
export class Join {
  static LEFT = "L";
  static RIGHT = "R";

  constructor(name, withinMs, graceMs = 0) {
    Object.assign(this, { name, within: withinMs, graceMs, head: encoder.encode(`weir.join/${name}/`) });
  }

  /** This join, keeping records buffered `graceMs` longer for late partners. */
  grace(graceMs) {
    return new Join(this.name, this.within, graceMs);
  }

  prefix(side, k) {
    return concat(this.head, encoder.encode(side), u32(k.length), k);
  }

  /** Buffers `record` on `side` (Join.LEFT or Join.RIGHT) and returns the other side's buffered
   * records of its key within the window, as { timestamp, value }, oldest first; null when it
   * came too late to join anything. */
  add(side, record) {
    if (record.key === null || record.timestamp === null) {
      throw new Error(`join \`${this.name}\`: the record needs a key and a timestamp`);
    }
    const k = record.key.slice();
    const ts = record.timestamp;
    const expires = ts + this.within + this.graceMs;
    const now = timers.eventTime();
    if (now !== null && expires <= now) return null;
    const other = this.prefix(side === Join.LEFT ? Join.RIGHT : Join.LEFT, k);
    const matches = [];
    for (const [sk, raw] of scanBytes(concat(other, timeKey(ts - this.within)), concat(other, timeKey(ts + this.within + 1)))) {
      const buffered = decodeBuffered(raw, sk);
      if (buffered.some(([matched]) => !matched)) host.put(sk, encodeBuffered(buffered.map(([, v]) => [true, v])));
      const at = timeFrom(sk.subarray(other.length));
      for (const [, value] of buffered) matches.push({ timestamp: at, value });
    }
    const own = concat(this.prefix(side, k), timeKey(ts));
    const raw = host.get(own);
    const buffered = raw === undefined || raw === null ? [] : decodeBuffered(raw, own);
    buffered.push([matches.length > 0, record.value === null ? new Uint8Array() : record.value.slice()]);
    host.put(own, encodeBuffered(buffered));
    timers.set(timers.EVENT_TIME, expires, own);
    return matches;
  }

  /** The buffered records `timer` expires, as { side, key, timestamp, value, matched }, taken
   * out of state; null for other timers. */
  expire(timer) {
    const k = timer.key;
    if (!startsWith(k, this.head) || k.length < this.head.length + 5) return null;
    const rest = k.subarray(this.head.length);
    const side = String.fromCharCode(rest[0]);
    const length = new DataView(rest.buffer, rest.byteOffset + 1, 4).getUint32(0);
    if ((side !== Join.LEFT && side !== Join.RIGHT) || rest.length !== 5 + length + 8) return null;
    const raw = host.get(k);
    if (raw === undefined || raw === null) return [];
    host.delete(k);
    const key = rest.slice(5, 5 + length);
    const timestamp = timeFrom(rest.subarray(5 + length));
    return decodeBuffered(raw, k).map(([matched, value]) => ({ side, key, timestamp, value, matched }));
  }
}
