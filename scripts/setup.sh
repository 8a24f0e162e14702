#!/usr/bin/env bash
# Installs what building weir needs on a fresh machine, once: Debian's RocksDB and libclang (so the
# rocksdb crate links in seconds instead of compiling RocksDB for an hour) and the wasm32-wasip2
# Rust target. Sourced by the other scripts; exports CARGO_TARGET_DIR.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/weir/target}"
mkdir -p "$CARGO_TARGET_DIR"

missing=()
for pkg in librocksdb-dev libclang-dev libssl-dev pkg-config; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "weir setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! $sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
        $sudo apt-get update >&2
        $sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "weir setup: adding the wasm32-wasip2 target" >&2
    rustup target add wasm32-wasip2 >&2
fi
