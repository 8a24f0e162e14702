#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, starts a real Apache Kafka
# broker (scripts/kafka.sh), builds weir and every guest component, runs unit, golden, bad-input,
# engine and Kafka tests, checks the `weir` binary end to end, and prints the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

step() { printf '\n== %s\n' "$*" >&2; }

# The tree as it was, to check at the end that running the tests changed no tracked file.
tracked_before=$(git status --porcelain --untracked-files=no)

step "format (cargo fmt --check)"
cargo fmt --all --check

step "Kafka broker (scripts/kafka.sh)"
already_running=false
./scripts/kafka.sh status >/dev/null 2>&1 && already_running=true
WEIR_KAFKA_BOOTSTRAP=$(./scripts/kafka.sh start)
export WEIR_KAFKA_BOOTSTRAP
# Stop the broker only if this run started it.
$already_running || trap './scripts/kafka.sh stop' EXIT
echo "broker at $WEIR_KAFKA_BOOTSTRAP" >&2

step "Python, JavaScript and TypeScript guest toolchains (componentize-py from PyPI; componentize-js and tsc from npm)"
python3 -m pip install -q --disable-pip-version-check componentize-py==0.25.1 >&2
command -v componentize-py >/dev/null || { echo "componentize-py installed but not on PATH" >&2; exit 1; }
# `npm ci` installs exactly the lock file and never rewrites it.
npm ci --no-audit --no-fund --loglevel=error >&2

step "Go guest toolchain (stock Go 1.24 or later: //go:wasmexport for wasip1)"
# Go's own installer puts it in /usr/local/go, which a non-login shell may not have on its PATH.
command -v go >/dev/null || [ ! -x /usr/local/go/bin/go ] || export PATH="$PATH:/usr/local/go/bin"
go_version=$(go env GOVERSION 2>/dev/null || true)
case "$go_version" in
    go1.2[4-9]*|go1.[3-9][0-9]*|go[2-9]*) echo "$go_version" >&2 ;;
    *) echo "Go 1.24 or later is needed for the Go processors' tests (found: ${go_version:-none}); https://go.dev/dl/" >&2; exit 1 ;;
esac

step "Go SDK unit tests (go test with the SDK's in-memory host; go vet for wasip1 too)"
(cd sdk/go && go vet ./... && GOOS=wasip1 GOARCH=wasm go vet ./... && go test ./...) >&2

step "a headless browser for the console's test (Debian's chromium and its chromedriver), and clang for C and C++ processors"
apt_missing=()
for pkg in chromium chromium-driver clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc libc++-19-dev-wasm32 \
    libc++abi-19-dev-wasm32; do
    dpkg -s "$pkg" >/dev/null 2>&1 || apt_missing+=("$pkg")
done
if [ ${#apt_missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y --no-install-recommends "${apt_missing[@]}" >&2 \
        || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "${apt_missing[@]}" >&2; }
fi

step "Python SDK unit tests (plain CPython, the SDK's in-memory host)"
python3 -m unittest discover -s sdk/python/tests

step "lints (cargo clippy, warnings are errors)"
cargo clippy --workspace --all-targets -- -D warnings

step "build (release; Rust guests by tests/build.rs, Python and JS ones by weir build in the tests)"
cargo build --release --workspace --all-targets

step "tests"
cargo test --release --workspace

step "the weir binary, end to end"
weir="$CARGO_TARGET_DIR/release/weir"
guests="$CARGO_TARGET_DIR/guests/wasm32-wasip2/release"
out=$("$weir" test --module "$guests/uppercase.wasm" --input tests/golden/uppercase.input.jsonl)
diff <(printf '%s\n' "$out") tests/golden/uppercase.expected.jsonl
if "$weir" test --module "$guests/not_a_processor.wasm" --input tests/golden/uppercase.input.jsonl 2>/dev/null; then
    echo "weir accepted a component for another world" >&2
    exit 1
fi
"$weir" inspect "$guests/word_count.wasm" >/dev/null
# weir build on a Rust folder (the Python and JS ones are built by the tests), in the guests'
# own target directory, where it is already built.
built=$(mktemp -d)
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests" "$weir" build guest-examples/uppercase -o "$built/uppercase.wasm" >&2
out=$("$weir" test --module "$built/uppercase.wasm" --input tests/golden/uppercase.input.jsonl)
diff <(printf '%s\n' "$out") tests/golden/uppercase.expected.jsonl
rm -rf "$built"
# The order flow of guest-examples/orders, six pipelines on this broker, fed and read back with
# `weir topic`; it fails if any order is lost or repeated.
guest-examples/orders/run.sh 300
echo "ok" >&2

step "benchmarks (figures only; speed is not asserted in tests)"
# The pipeline benchmark compares weir's word count with the same one in Quix Streams.
python3 -m pip install -q quixstreams >&2 || echo "pip could not install quixstreams; its comparison will say so" >&2
cargo bench -p weir-tests --bench engine
cargo bench -p weir-tests --bench pipeline
cargo bench -p weir-tests --bench serve
cargo bench -p weir-tests --bench query
cargo bench -p weir-tests --bench fleet

step "the checkout is as the tests found it"
tracked_after=$(git status --porcelain --untracked-files=no)
if [ "$tracked_after" != "$tracked_before" ]; then
    echo "running the tests changed tracked files:" >&2
    diff <(printf '%s\n' "$tracked_before") <(printf '%s\n' "$tracked_after") >&2 || true
    exit 1
fi
echo "ok" >&2
