#!/usr/bin/env bash
# weir's main job on an embedded default: builds weir and the example processors, then runs
# `uppercase` and the stateful `word-count` over sample records with `weir test` (no broker; state
# lives in a temporary directory and is gone afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo build --release -p weir-runtime >&2
cargo build --release --target wasm32-wasip2 --target-dir "$CARGO_TARGET_DIR/guests" \
    -p uppercase -p word-count >&2
weir="$CARGO_TARGET_DIR/release/weir"
guests="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release"
input=guest-examples/sample-input.jsonl
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT

echo "--- input ($input)"
cat "$input"
echo "--- weir test --module uppercase.wasm"
"$weir" test --module "$guests/uppercase.wasm" --input "$input"
echo "--- weir test --module word_count.wasm --state-dir (run 1)"
"$weir" test --module "$guests/word_count.wasm" --input "$input" --state-dir "$state"
echo "--- the same again: counts continue from the state directory (run 2)"
"$weir" test --module "$guests/word_count.wasm" --input "$input" --state-dir "$state"
