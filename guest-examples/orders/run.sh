#!/usr/bin/env bash
# The whole order flow on a real Apache Kafka broker, as six weir pipelines:
#
#   orders --enrich (customers table)--> enriched --validate x3--> validations
#          --aggregate--> verdicts --notify (joined with payments in event time)--> emails
#
# Starts the broker if it is not running (scripts/kafka.sh; stopped again at the end if this
# script started it), builds weir and the four processors, feeds customers, payments and orders
# (timestamped, so the run is the same every time), and prints what came out. Usage:
#
#   guest-examples/orders/run.sh [ORDERS]      (default 300)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
source scripts/setup.sh
orders=${1:-300}

say() { printf '== %s\n' "$*" >&2; }

say "building weir and the processors"
cargo build --release -q -p weir-runtime
weir="$CARGO_TARGET_DIR/release/weir"
work=$(mktemp -d)
for step in enrich validate aggregate notify; do
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR/guests" "$weir" build "guest-examples/orders/$step" -o "$work/orders-$step.wasm" >&2
done

already_running=false
scripts/kafka.sh status >/dev/null 2>&1 && already_running=true
bootstrap=$(scripts/kafka.sh start)
pids=()
finish() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    $already_running || scripts/kafka.sh stop >&2
    rm -rf "$work"
}
trap finish EXIT

run="orders-$(date +%s)"
for topic in customers orders enriched validations verdicts payments emails; do
    "$weir" topic create "$run-$topic" --partitions 4 --bootstrap-servers "$bootstrap" >&2
done

# Customers c0..c99 (orders also name c100..c104, who are unknown); order i at event time
# base + 10 ms * i, paid 500 ms later unless i is a multiple of 3.
base=$(( ($(date +%s) - 1800) * 1000 ))
for c in $(seq 0 99); do
    printf '{"key":"c%d","value":"{\\"name\\":\\"customer %d\\"}"}\n' "$c" "$c"
done > "$work/customers.jsonl"
items=(book pen unicorn lamp)
for i in $(seq 0 $((orders - 1))); do
    printf '{"key":"c%d","value":"{\\"order_id\\":\\"o%d\\",\\"amount\\":%d,\\"item\\":\\"%s\\"}","timestamp":%d}\n' \
        $((i % 105)) "$i" $((i * 37 % 1200)) "${items[i % 4]}" $((base + i * 10)) >> "$work/orders.jsonl"
    if (( i % 3 != 0 )); then
        printf '{"key":"o%d","value":"{\\"order_id\\":\\"o%d\\"}","timestamp":%d}\n' "$i" "$i" $((base + i * 10 + 500)) >> "$work/payments.jsonl"
    fi
done

pipeline() { # name module inputs output [extra line] [module config]
    cat > "$work/$1.toml" <<TOML
application_id = "$run-$1"
bootstrap_servers = "$bootstrap"
inputs = [$3]
$5

[outputs]
default = "$run-$4"

[module]
path = "$work/orders-$2.wasm"
config = { $6 }
TOML
    "$weir" run "$work/$1.toml" --cache-dir "$work/cache" ${7:+--admin "$7"} 2> "$work/$1.log" > /dev/null &
    pids+=($!)
}
# The aggregator and the enricher serve queries of their state and table, as a UI's sidecar would.
admin_port=${ORDERS_ADMIN_PORT:-18790}
aggregate_admin="127.0.0.1:$admin_port"
enrich_admin="127.0.0.1:$((admin_port + 1))"
"$weir" topic produce "$run-customers" -i "$work/customers.jsonl" --bootstrap-servers "$bootstrap" >&2
"$weir" topic produce "$run-payments" -i "$work/payments.jsonl" --bootstrap-servers "$bootstrap" >&2

say "starting the pipelines (logs in $work)"
pipeline enrich enrich "\"$run-orders\"" enriched "tables.customers = { topic = \"$run-customers\" }" "" "$enrich_admin"
for check in fraud inventory details; do
    pipeline "validate-$check" validate "\"$run-enriched\"" validations "" "check = \"$check\", out_of_stock = \"unicorn,dragon\""
done
pipeline aggregate aggregate "\"$run-validations\"" verdicts "" 'validators = "fraud,inventory,details"' "$aggregate_admin"
pipeline notify notify "\"$run-verdicts\", \"$run-payments\"" emails "" "payments = \"$run-payments\""

say "producing $orders orders"
"$weir" topic produce "$run-orders" -i "$work/orders.jsonl" --bootstrap-servers "$bootstrap" >&2
"$weir" topic consume "$run-verdicts" --count "$orders" --idle-ms 60000 --bootstrap-servers "$bootstrap" > "$work/verdicts.jsonl"
# Event time moves only with records: once the emails stop coming, one record per partition an
# hour of event time later closes the windows of the orders that were never paid.
previous=-1
while true; do
    sleep 3
    now=$("$weir" topic consume "$run-emails" --idle-ms 1000 --bootstrap-servers "$bootstrap" | wc -l)
    [ "$now" -eq "$previous" ] && break
    previous=$now
done
for t in $(seq 0 63); do
    printf '{"key":"clock-%d","value":"{\\"status\\":\\"CLOCK\\"}","timestamp":%d}\n' "$t" $((base + 3600 * 1000))
done > "$work/clock.jsonl"
"$weir" topic produce "$run-verdicts" -i "$work/clock.jsonl" --bootstrap-servers "$bootstrap" >&2
sleep 3
"$weir" topic consume "$run-emails" --idle-ms 5000 --bootstrap-servers "$bootstrap" > "$work/emails.jsonl"

validated=$(grep -c 'VALIDATED' "$work/verdicts.jsonl" || true)
failed=$(grep -c 'FAILED' "$work/verdicts.jsonl" || true)
confirmed=$(grep -c 'confirmed' "$work/emails.jsonl" || true)
missing=$(grep -c 'payment missing' "$work/emails.jsonl" || true)
say "results"
echo "orders:    $orders"
echo "verdicts:  $(wc -l < "$work/verdicts.jsonl") ($validated VALIDATED, $failed FAILED)"
echo "emails:    $(wc -l < "$work/emails.jsonl") ($confirmed confirmed, $missing payment missing)"
echo "a verdict: $(head -1 "$work/verdicts.jsonl")"
echo "an email:  $(head -1 "$work/emails.jsonl")"

# The grid's lookups, answered by the sidecars from their state and table.
order=o1
verdict=$(curl -s "http://$aggregate_admin/v1/pipelines/$run-aggregate/state/$order")
customer=$(curl -s "http://$enrich_admin/v1/pipelines/$run-enrich/tables/customers/c1")
echo "order $order, from the aggregator's state: $verdict"
echo "customer c1, from the enricher's table:    $customer"
expected=$(grep "\"key\":\"$order\"" "$work/verdicts.jsonl" | grep -o "VALIDATED\|FAILED" | head -1 || true)
if [[ "$verdict" != *"\"status\":\"$expected\""* ]] || [[ "$customer" != *'"name":"customer 1"'* ]]; then
    echo "the sidecars' answers do not match the flow (verdict of $order: ${expected:-none seen})" >&2
    exit 1
fi
if [ "$((validated + failed))" -ne "$orders" ] || [ "$((confirmed + missing))" -ne "$validated" ]; then
    kept="${TMPDIR:-/tmp}/$run"
    cp -r "$work" "$kept"
    echo "the flow lost or repeated something: logs and records kept in $kept" >&2
    exit 1
fi
