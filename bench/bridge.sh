#!/usr/bin/env bash
# Bridge throughput: our laptop-broker's bridge next to Mosquitto's, in one
# run. Each edge broker bridges `topic bench/# out QOS` to a central
# Mosquitto; mqtt-bench publishes on the edge and subscribes on the
# central (--sub-port), so every message crosses the bridge.
#
#   bench/bridge.sh                  # 5 s per run, 4 publishers, 64-byte payloads
#   DURATION=10 CONNECTIONS=1 SIZE=256 bench/bridge.sh
#   MOSQUITTO=/usr/local/sbin/mosquitto bench/bridge.sh
#
# The central broker is Mosquitto in both runs (a fresh one per run), so
# the difference is the edge broker and its bridge. Both edges use the
# same configuration (defaults otherwise: max_inflight_messages 20,
# max_queued_messages 1000; bridge protocol 3.1.1, try_private true).
# "CPU us" is the edge broker's CPU time per delivered message. Exit
# status: 1 if a run lost acknowledged messages or failed, else 0.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-4}
SIZE=${SIZE:-64}
QOSES=${QOSES:-"0 1"}

if [[ ! -x $MOSQUITTO ]]; then
    echo "bridge.sh: Mosquitto not found (set MOSQUITTO=/path/to/mosquitto)" >&2
    exit 2
fi

echo "building laptop-broker and mqtt-bench (release) into $CARGO_TARGET_DIR ..." >&2
(cd "$ROOT" && cargo build --release --quiet --example laptop-broker --example mqtt-bench)
BIN=$CARGO_TARGET_DIR/release/examples

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mqtt-bridge-bench.XXXXXX")
PIDS=()
stop_all() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

SCRIPT=bridge.sh
# free_port, wait_for_port
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# start NAME CONF: starts laptop-broker (ours) or mosquitto; sets LAST_PID.
start() {
    local name=$1 conf=$2
    if [[ $name == ours ]]; then
        "$BIN/laptop-broker" -c "$conf" >"$conf.log" 2>&1 &
    else
        if [[ $(id -u) == 0 ]]; then echo "user root" >>"$conf"; fi
        "$MOSQUITTO" -c "$conf" >"$conf.log" 2>&1 &
    fi
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

cpu_ticks() {
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# bench EDGE QOS: sets RESULT to "rate lost missing dup status cpu-us".
bench() {
    local edge=$1 qos=$2 out status=0
    local central_port edge_port
    central_port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$central_port" >"$WORK/central.conf"
    start mosquitto "$WORK/central.conf"
    wait_for_port "$central_port" || { echo "bridge.sh: nothing listens on $central_port" >&2; return 1; }
    edge_port=$(free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nconnection central\naddress 127.0.0.1:%s\ntopic bench/# out %s\nremote_clientid edge-%s\nrestart_timeout 1\n' \
        "$edge_port" "$central_port" "$qos" "$edge" >"$WORK/edge-$edge.conf"
    start "$edge" "$WORK/edge-$edge.conf"
    local edge_pid=$LAST_PID
    wait_for_port "$edge_port" || { echo "bridge.sh: nothing listens on $edge_port" >&2; return 1; }
    # Until the bridge is up: a probe crosses it.
    for _ in $(seq 1 100); do
        if "$BIN/mqtt-bench" p2p -p "$edge_port" --sub-port "$central_port" -c 1 -n 1 -q 1 \
            -d 2 --drain 1 --json >/dev/null 2>&1; then
            break
        fi
        sleep 0.1
    done
    local before after
    before=$(cpu_ticks "$edge_pid")
    out=$("$BIN/mqtt-bench" fan-in -p "$edge_port" --sub-port "$central_port" -c "$CONNECTIONS" \
        -s "$SIZE" -q "$qos" -d "$DURATION" --json 2>"$WORK/bench.err") || status=$?
    after=$(cpu_ticks "$edge_pid")
    stop_all
    if [[ -z $out ]]; then
        echo "bridge.sh: $edge q$qos failed: $(cat "$WORK/bench.err")" >&2
        RESULT="0 - - - fail -"
        return
    fi
    RESULT=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
cpu_us = (int(sys.argv[3]) / int(sys.argv[4])) * 1e6 / max(r["received"], 1)
print(round(r["msgs_per_sec"]), r["lost"], r["missing"], r["duplicates"],
      "ok" if sys.argv[2] == "0" else "LOST", f"{cpu_us:.2f}")
' "$out" "$status" "$((after - before))" "$(getconf CLK_TCK)")
}

echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "command: mqtt-bench fan-in -p EDGE --sub-port CENTRAL -c $CONNECTIONS -s $SIZE -q QOS -d $DURATION --json" >&2
FAILED=0
printf '| %-3s | %12s | %12s | %6s | %11s | %11s | %-18s | %-18s |\n' \
    QoS "ours msg/s" "mosq msg/s" ratio "ours CPU us" "mosq CPU us" \
    "ours lost/miss/dup" "mosq lost/miss/dup"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ----- -------------- -------------- -------- \
    ------------- ------------- -------------------- --------------------
for qos in $QOSES; do
    bench ours "$qos"
    read -r o_rate o_lost o_miss o_dup o_status o_cpu <<<"$RESULT"
    bench mosquitto "$qos"
    read -r m_rate m_lost m_miss m_dup m_status m_cpu <<<"$RESULT"
    ratio=$(python3 -c 'import sys; o, m = map(float, sys.argv[1:]); print(f"{o/m:.2f}" if m else "-")' "$o_rate" "$m_rate")
    [[ $o_status == ok ]] || FAILED=1
    printf '| %-3s | %12s | %12s | %6s | %11s | %11s | %-18s | %-18s |\n' \
        "$qos" "$o_rate" "$m_rate" "$ratio" "$o_cpu" "$m_cpu" \
        "$o_lost/$o_miss/$o_dup ${o_status/ok/}" "$m_lost/$m_miss/$m_dup ${m_status/ok/}"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exit $FAILED
