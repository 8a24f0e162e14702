"""The word count of weir's pipeline benchmark, written with Quix Streams, for comparison.

Same broker, same input (one word per record, keyed by the word), same processing guarantee
(exactly-once), state in RocksDB backed by changelog topics, as in weir. Other settings are Quix's
defaults; its commit interval is 5 s unless --commit-interval sets it (weir commits every 100 ms
under exactly-once, as Kafka Streams does).

    pip install quixstreams
    python3 tests/benches/quix_wordcount.py --broker 127.0.0.1:9092 --input TOPIC --output TOPIC --count N [--group G]

Prints one JSON line: records, seconds (from the first record to the end of the run), records/s.
"""

import argparse
import json
import tempfile
import time
import uuid

from quixstreams import Application


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--broker", required=True)
    args.add_argument("--input", required=True)
    args.add_argument("--output", required=True)
    args.add_argument("--count", type=int, required=True)
    args.add_argument("--group", default=None, help="its consumer group (the benchmark times it by its commits)")
    args.add_argument("--commit-interval", type=float, default=None, help="seconds; Quix's default when absent")
    opts = args.parse_args()

    first = []

    def count(word: str, state) -> str:
        if not first:
            first.append(time.perf_counter())
        n = state.get("count", 0) + 1
        state.set("count", n)
        return str(n)

    extra = {} if opts.commit_interval is None else {"commit_interval": opts.commit_interval}
    app = Application(
        **extra,
        broker_address=opts.broker,
        consumer_group=opts.group or f"quix-wordcount-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        state_dir=tempfile.mkdtemp(prefix="quix-state-"),
        loglevel="WARNING",
    )
    source = app.topic(opts.input, key_deserializer="string", value_deserializer="string")
    sink = app.topic(opts.output, key_serializer="string", value_serializer="string")
    sdf = app.dataframe(source)
    sdf = sdf.apply(count, stateful=True)
    sdf.to_topic(sink)
    app.run(count=opts.count, collect=False)
    seconds = time.perf_counter() - first[0] if first else float("nan")
    print(json.dumps({"records": opts.count, "seconds": seconds, "records_per_second": opts.count / seconds}))


if __name__ == "__main__":
    main()
