// Types of weir's JavaScript SDK (weir.js), for processors written in TypeScript: `weir build`
// type-checks a folder with `app.ts` against them (tsc, strict), then builds the JavaScript.
//
//     import { Output, processor as weirProcessor, state, type Record } from "weir";
//
//     export const processor = weirProcessor((record: Record) => new Output(record.text().toUpperCase()));

declare module "weir" {
  /** Bytes or text; text is stored as UTF-8. */
  export type Bytes = Uint8Array | string;

  /** One input record. `key` and `value` are null when absent (a null value is a tombstone). */
  export class Record {
    private constructor();
    readonly key: Uint8Array | null;
    readonly value: Uint8Array | null;
    /** Its position in its batch. */
    readonly index: number;
    readonly topic: string;
    readonly partition: number;
    /** The input's name: the topic name unless configured. */
    readonly input: string;
    readonly offset: number;
    /** Milliseconds since the Unix epoch, or null. */
    readonly timestamp: number | null;
    /** The headers as [name, value] pairs, in order; names may repeat. */
    readonly headers: Array<[string, Uint8Array | null]>;
    /** The value of the first header called `name`, or undefined. */
    header(name: string): Uint8Array | null | undefined;
    /** The value as a string; throws if it is a tombstone or not UTF-8. */
    text(): string;
    /** The key as a string, or null without a key. */
    keyText(): string | null;
    /** An output like this record (same key, headers and timestamp) with the value mapped by
     * `f`; a tombstone stays a tombstone. */
    mapValue(f: (value: Uint8Array) => Bytes): Output;
    /** An output identical to this record, for the default output. */
    forward(): Output;
  }

  export interface OutputOptions {
    key?: Bytes | null;
    /** A configured output's name; the default output without it. */
    topic?: string | null;
    headers?: Array<[string, Bytes]>;
    /** Milliseconds since the Unix epoch; without it, the timestamp of the record it answers. */
    timestamp?: number | null;
    /** The record it answers, when not the one being processed. */
    source?: Record | null;
  }

  /** One record to produce. A null value is a tombstone. */
  export class Output {
    constructor(value: Bytes | null, options?: OutputOptions);
    readonly value: Uint8Array | null;
    readonly key: Uint8Array | null;
    readonly topic: string | null;
  }

  /** What a processor or timer function returns. */
  export type Outputs = Output | Output[] | null | undefined | void;

  export interface Timer {
    clock: Clock;
    /** Milliseconds since the Unix epoch. */
    at: number;
    key: Uint8Array;
  }

  export type Clock = "event-time" | "wall-clock";

  export interface ProcessorOptions {
    /** The configuration keys the processor accepts; others are refused at start. */
    config?: string[];
    /** Called with each timer that fires; the app then has `export { timerHandler } from "weir";`. */
    onTimer?: ((timer: Timer) => Outputs) | null;
  }

  /** The component's `processor` export. */
  export interface ProcessorExport {
    init(pairs: Array<[string, string]>): unknown;
    process(batch: unknown): unknown;
  }

  /** Turns a per-record function into the component's `processor` export:
   * `export const processor = weir.processor(fn, { config: ["key"] })`. */
  export function processor(fn: (record: Record) => Outputs, options?: ProcessorOptions): ProcessorExport;

  /** The value given for a configuration key (`--config key=value`), or undefined. */
  export function config(key: string): string | undefined;

  /** ASCII-only uppercase of bytes, like Rust's `to_ascii_uppercase`. */
  export function asciiUpper(value: Uint8Array): Uint8Array;

  /** Keys are strings (stored as UTF-8) or bytes. */
  export type Key = Bytes;

  /** The processor's key-value state, private to it and to the input partition being processed;
   * values are JSON, as in every weir SDK. */
  export const state: {
    get<T = unknown>(k: Key): T | undefined;
    get<T = unknown>(k: Key, fallback: T): T;
    put(k: Key, value: unknown): void;
    delete(k: Key): void;
    getBytes(k: Key): Uint8Array | undefined;
    putBytes(k: Key, value: Uint8Array): void;
    scanRange<T = unknown>(start: Key, end?: Key | null): Iterable<[Uint8Array, T]>;
    scanPrefix<T = unknown>(prefix: Key): Iterable<[Uint8Array, T]>;
  };

  /** Lookups in the pipeline's tables; values decoded from JSON. */
  export const table: {
    get<T = unknown>(name: string, k: Key): T | undefined;
    get<T = unknown>(name: string, k: Key, fallback: T): T;
    getBytes(name: string, k: Key): Uint8Array | undefined;
  };

  /** Log lines into weir's log of the processor (`weir logs NAME`). */
  export const log: {
    trace(message: unknown): void;
    debug(message: unknown): void;
    info(message: unknown): void;
    warn(message: unknown): void;
    error(message: unknown): void;
  };

  export const timers: {
    readonly EVENT_TIME: "event-time";
    readonly WALL_CLOCK: "wall-clock";
    set(clock: Clock, at: number, k: Key): void;
    cancel(clock: Clock, at: number, k: Key): void;
    /** The partition's event time so far; null before any timestamped record. */
    eventTime(): number | null;
  };

  /** The component's `timer-handler` export. */
  export const timerHandler: { onTimer(fired: unknown): unknown };

  export interface Window<T> {
    key: Uint8Array;
    start: number;
    end: number;
    value: T;
  }

  /** Aggregation over event-time windows, with a grace period for late records. */
  export class Windows {
    constructor(name: string, size: number, advance: number, grace?: number);
    static tumbling(name: string, sizeMs: number): Windows;
    static hopping(name: string, sizeMs: number, advanceMs: number): Windows;
    grace(graceMs: number): Windows;
    starts(timestamp: number): number[];
    aggregate<T>(record: Record, k: Key | null, fold: (aggregate: T) => T, initial?: T | null): number;
    close<T = unknown>(timer: Timer): Window<T> | null;
  }

  export type Side = "L" | "R";

  /** Stream-stream joins within a time window, with a grace period. */
  export class Join {
    static readonly LEFT: "L";
    static readonly RIGHT: "R";
    constructor(name: string, withinMs: number, graceMs?: number);
    grace(graceMs: number): Join;
    add(side: Side, record: Record): Array<{ timestamp: number; value: Uint8Array }> | null;
    expire(timer: Timer): Array<{ side: Side; key: Uint8Array; timestamp: number; value: Uint8Array; matched: boolean }> | null;
  }
}
