#!/usr/bin/env bash
# weir's main job on an embedded default: builds weir and the word-count example, then runs a
# pipeline over sample records on an embedded, in-memory Kafka (librdkafka's mock cluster: not
# durable; nothing to install) and prints what came out.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release -p weir-runtime >&2
cargo build --release --target wasm32-wasip2 --target-dir "$CARGO_TARGET_DIR/guests" \
    -p uppercase -p word-count >&2
weir="$CARGO_TARGET_DIR/release/weir"
guests="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release"
"$weir" demo --module "$guests/word_count.wasm" --input guest-examples/sample-input.jsonl
