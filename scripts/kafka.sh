#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft) on 127.0.0.1 for weir's tests and benchmarks.
#
#   scripts/kafka.sh start    install on first use (Maven Central, cached under ~/.cache/weir),
#                             format, start, wait until it answers; prints the bootstrap address
#   scripts/kafka.sh stop     stop the broker this script started (by its PID), nothing else
#   scripts/kafka.sh status   say whether it runs, and where
#   scripts/kafka.sh kill     SIGKILL the broker this script started (a crash, for fault tests)
#   scripts/kafka.sh resume   start the broker again on the data it left, as after a crash
#
# Port: WEIR_KAFKA_PORT (default 9092); the KRaft controller listens on the next port.
set -euo pipefail

version="${WEIR_KAFKA_VERSION:-4.1.1}"
port="${WEIR_KAFKA_PORT:-9092}"
controller_port=$((port + 1))
here="$(cd "$(dirname "$0")" && pwd)"
home="${WEIR_CACHE:-$HOME/.cache/weir}/kafka-$version"
data="${TMPDIR:-/tmp}/weir-kafka-$port"
pidfile="$data/broker.pid"
bootstrap="127.0.0.1:$port"

running() {
    [ -f "$pidfile" ] || return 1
    local pid
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null && grep -q "kafka.Kafka" "/proc/$pid/cmdline" 2>/dev/null
}

answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

install() {
    [ -f "$home/.complete" ] && return 0
    echo "kafka.sh: fetching Apache Kafka $version from Maven Central into $home" >&2
    rm -rf "$home"
    mkdir -p "$home/libs"
    mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
        -Dkafka.version="$version" -DincludeScope=runtime -DoutputDirectory="$home/libs" >&2
    touch "$home/.complete"
}

java_cmd() {
    java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" -cp "$home/libs/*" "$@"
}

start() {
    if running; then
        echo "$bootstrap"
        return 0
    fi
    if answers; then
        echo "kafka.sh: something else already listens on $bootstrap; set WEIR_KAFKA_PORT" >&2
        exit 1
    fi
    command -v java >/dev/null || { echo "kafka.sh: java is not installed (the broker needs Java 17+)" >&2; exit 1; }
    install
    if [ "${1:-}" = resume ]; then
        [ -f "$data/server.properties" ] || { echo "kafka.sh: no broker data in $data to resume from" >&2; exit 1; }
        launch
        return
    fi
    rm -rf "$data"
    mkdir -p "$data/logs"
    cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
PROPS
    local cluster_id
    cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$data/server.properties" >"$data/format.log" 2>&1 || {
        echo "kafka.sh: formatting the storage failed:" >&2
        cat "$data/format.log" >&2
        exit 1
    }
    launch
}

# Starts the broker on the formatted $data and waits until it answers.
launch() {
    local started_before
    started_before=$(grep -c "Kafka Server started" "$data/broker.log" 2>/dev/null || true)
    started_before=${started_before:-0}
    nohup bash -c "exec java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
        -Dlog4j2.configurationFile='$here/kafka/log4j2.properties' -cp '$home/libs/*' \
        kafka.Kafka '$data/server.properties'" >>"$data/broker.log" 2>&1 &
    local pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 1 120); do
        # The process itself, not `running`: while bash execs java, its command line can read
        # empty for a moment.
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "kafka.sh: the broker exited during start-up; its log:" >&2
            tail -n 40 "$data/broker.log" >&2
            exit 1
        fi
        if answers && [ "$(grep -c "Kafka Server started" "$data/broker.log")" -gt "$started_before" ]; then
            echo "$bootstrap"
            return 0
        fi
        sleep 0.5
    done
    echo "kafka.sh: the broker did not answer on $bootstrap within 60 s; its log is $data/broker.log" >&2
    exit 1
}

stop() {
    if ! running; then
        echo "kafka.sh: no broker started by this script runs on port $port" >&2
        return 0
    fi
    local pid
    pid=$(cat "$pidfile")
    kill "$pid"
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
        sleep 0.5
    done
    echo "kafka.sh: the broker (pid $pid) did not stop in 30 s; sending SIGKILL" >&2
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

crash() {
    running || { echo "kafka.sh: no broker started by this script runs on port $port" >&2; exit 1; }
    local pid
    pid=$(cat "$pidfile")
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    rm -f "$pidfile"
}

case "${1:-}" in
    start) start ;;
    resume) start resume ;;
    kill) crash ;;
    stop) stop ;;
    status)
        if running; then echo "running on $bootstrap (pid $(cat "$pidfile"))"; else echo "not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status|kill|resume" >&2; exit 2 ;;
esac
