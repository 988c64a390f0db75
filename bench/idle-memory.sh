#!/usr/bin/env bash
# Memory per idle connection and connection rate: our laptop-broker against
# Mosquitto, the same settings, in one run (issue #23).
#
#   bench/idle-memory.sh                       # 5,000 connections, plain and mutual TLS
#   COUNTS="5000 19000" bench/idle-memory.sh   # also 19,000 (the fd limit here is 20,000)
#   TRANSPORTS=plain CONCURRENCY=128 bench/idle-memory.sh
#   MOSQUITTO=/usr/local/sbin/mosquitto bench/idle-memory.sh
#
# For each count and transport, each broker is started fresh on a free
# loopback port (listener on 127.0.0.1, allow_anonymous true, Mosquitto's
# default max_connections -1; for tls: cafile/certfile/keyfile from gen-certs
# and require_certificate true), then examples/idle-conns.rs opens COUNT
# connections (CONNECT, CONNACK, then idle with Keep Alive 600 s) from
# source addresses spread over 127.1.0.0/16 and reads the broker's VmRSS
# before and after. bytes/conn = VmRSS growth / COUNT: the broker's state,
# the tasks, the buffers and the allocator's overhead (not the kernel's
# socket buffers). conn/s: COUNT / the time from the first connect to the
# last CONNACK, CONCURRENCY being set up at a time. Compare the ratios, not
# the absolute numbers: the load tool shares the cores with the broker.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
COUNTS=${COUNTS:-5000}
TRANSPORTS=${TRANSPORTS:-"plain tls"}
CONCURRENCY=${CONCURRENCY:-64}

if [[ ! -x $MOSQUITTO ]]; then
    echo "idle-memory.sh: Mosquitto not found (set MOSQUITTO=/path/to/mosquitto)" >&2
    exit 2
fi
for n in $COUNTS; do
    if (( n + 100 > $(ulimit -n) )); then
        echo "idle-memory.sh: $n connections need more than 'ulimit -n' ($(ulimit -n)) file descriptors" >&2
        exit 2
    fi
done

echo "building laptop-broker, gen-certs and idle-conns (release) into $CARGO_TARGET_DIR ..." >&2
(cd "$ROOT" && cargo build --release --quiet \
    --example laptop-broker --example gen-certs --example idle-conns)
BIN=$CARGO_TARGET_DIR/release/examples

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mqtt-idle.XXXXXX")
BROKER_PID=""
stop_broker() {
    if [[ -n $BROKER_PID ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}
cleanup() {
    stop_broker
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/gen-certs" --out "$WORK/certs" --server-name 127.0.0.1 --client-name bench >/dev/null
# Mosquitto drops root for user mosquitto: let it read the certificates.
chmod 755 "$WORK" "$WORK/certs"
chmod 644 "$WORK"/certs/*

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_config() {
    local file=$1 port=$2 transport=$3
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_connections -1"
        if [[ $transport == tls ]]; then
            echo "cafile $WORK/certs/ca.crt"
            echo "certfile $WORK/certs/server.crt"
            echo "keyfile $WORK/certs/server.key"
            echo "require_certificate true"
        fi
    } >"$file"
}

wait_for_port() {
    local port=$1
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 1
}

start_broker() {
    local name=$1 transport=$2 conf
    PORT=$(free_port)
    conf="$WORK/$name-$transport.conf"
    write_config "$conf" "$PORT" "$transport"
    if [[ $name == ours ]]; then
        "$BIN/laptop-broker" -c "$conf" >"$WORK/$name.log" 2>&1 &
    else
        if [[ $(id -u) == 0 ]]; then echo "user root" >>"$conf"; fi
        "$MOSQUITTO" -c "$conf" >"$WORK/$name.log" 2>&1 &
    fi
    BROKER_PID=$!
    if ! wait_for_port "$PORT"; then
        echo "idle-memory.sh: $name did not start on port $PORT:" >&2
        cat "$WORK/$name.log" >&2
        exit 2
    fi
}

# measure NAME TRANSPORT COUNT: sets RESULT to "bytes_per_conn conn_per_s".
measure() {
    local name=$1 transport=$2 count=$3 out
    local -a tls=()
    if [[ $transport == tls ]]; then
        tls=(--cafile "$WORK/certs/ca.crt" --cert "$WORK/certs/client.crt" --key "$WORK/certs/client.key")
    fi
    start_broker "$name" "$transport"
    if ! out=$("$BIN/idle-conns" -p "$PORT" -n "$count" -c "$CONCURRENCY" --pid "$BROKER_PID" "${tls[@]}" 2>"$WORK/idle.err"); then
        echo "idle-memory.sh: $name $transport $count failed: $(cat "$WORK/idle.err")" >&2
        stop_broker
        exit 1
    fi
    stop_broker
    echo "  $name $transport: $out" >&2
    RESULT="$(sed -n 's/.*bytes_per_conn=\([-0-9]*\).*/\1/p' <<<"$out") $(sed -n 's/.*conn_per_s=\([0-9]*\).*/\1/p' <<<"$out")"
}

ratio() { python3 -c 'import sys; o, m = map(float, sys.argv[1:]); print(f"{o/m:.2f}" if m else "-")' "$1" "$2"; }

echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "command: idle-conns -p PORT -n COUNT -c $CONCURRENCY --pid BROKER [--cafile --cert --key]" >&2
printf '| %-6s | %-5s | %14s | %14s | %6s | %10s | %10s | %6s |\n' \
    count link "ours B/conn" "mosq B/conn" ratio "ours c/s" "mosq c/s" ratio
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------- ------- ---------------- ---------------- -------- ------------ ------------ --------
for count in $COUNTS; do
    for transport in $TRANSPORTS; do
        measure ours "$transport" "$count"
        read -r o_mem o_rate <<<"$RESULT"
        measure mosquitto "$transport" "$count"
        read -r m_mem m_rate <<<"$RESULT"
        printf '| %-6s | %-5s | %14s | %14s | %6s | %10s | %10s | %6s |\n' \
            "$count" "$transport" "$o_mem" "$m_mem" "$(ratio "$o_mem" "$m_mem")" \
            "$o_rate" "$m_rate" "$(ratio "$o_rate" "$m_rate")"
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
