#!/usr/bin/env bash
# Runs mqtt-bench against our laptop-broker and against Mosquitto on this
# machine, in one run, and prints msg/s for each and the ratio ours/mosquitto.
#
#   bench/compare.sh                 # 5 s per run, 10 connections, 64-byte payloads
#   DURATION=10 CONNECTIONS=20 SIZE=256 bench/compare.sh
#   MOSQUITTO=/usr/local/sbin/mosquitto bench/compare.sh
#
# Matrix: fan-in and fan-out x QoS 0 and 1 x plain and TLS (mutual TLS:
# require_certificate true, the seed guide's setup). Each broker gets its own
# free loopback port and the same settings (defaults otherwise: both use
# max_inflight_messages 20 and max_queued_messages 1000). Both brokers run
# under the same load for the same command, one after the other, so compare
# the ratios, not the absolute numbers. "CPU us" is the broker's own CPU time
# (user + system, from /proc) per delivered message: it does not depend on
# how much of the shared cores the scheduler gave each broker. Exit status: 1 if any run lost
# acknowledged messages or failed, else 0.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-10}
SIZE=${SIZE:-64}
PROTOCOL=${PROTOCOL:-mqttv311}
SCENARIOS=${SCENARIOS:-"fan-in fan-out"}
QOSES=${QOSES:-"0 1"}
TRANSPORTS=${TRANSPORTS:-"plain tls"}

if [[ ! -x $MOSQUITTO ]]; then
    echo "compare.sh: Mosquitto not found (set MOSQUITTO=/path/to/mosquitto)" >&2
    exit 2
fi

SCRIPT=compare.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_setup compare bench mqtt-bench

# cpu_ticks: user + system CPU time the running broker has used, in clock ticks.
cpu_ticks() {
    sed 's/^.*) //' "/proc/$BROKER_PID/stat" | awk '{ print $12 + $13 }'
}

# bench NAME SCENARIO QOS TRANSPORT: sets RESULT to
# "rate lost missing dup status cpu-us-per-message".
# (Not run in a subshell, so the EXIT trap always knows the broker to stop.)
bench() {
    local name=$1 scenario=$2 qos=$3 transport=$4 out status=0
    local -a tls=()
    if [[ $transport == tls ]]; then
        tls=(--cafile "$WORK/certs/ca.crt" --cert "$WORK/certs/client.crt" --key "$WORK/certs/client.key")
    fi
    start_broker "$name" "$transport"
    local before after
    before=$(cpu_ticks)
    out=$("$BIN/mqtt-bench" "$scenario" -p "$PORT" -c "$CONNECTIONS" -s "$SIZE" -q "$qos" \
        -d "$DURATION" -V "$PROTOCOL" "${tls[@]}" --json 2>"$WORK/bench.err") || status=$?
    after=$(cpu_ticks)
    stop_broker
    if [[ -z $out ]]; then
        echo "compare.sh: $name $scenario q$qos $transport failed: $(cat "$WORK/bench.err")" >&2
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
echo "command: mqtt-bench SCENARIO -c $CONNECTIONS -s $SIZE -q QOS -d $DURATION -V $PROTOCOL [--cafile --cert --key] --json" >&2
FAILED=0
printf '| %-8s | %-3s | %-5s | %12s | %12s | %6s | %11s | %11s | %-18s | %-18s |\n' \
    scenario QoS link "ours msg/s" "mosq msg/s" ratio "ours CPU us" "mosq CPU us" \
    "ours lost/miss/dup" "mosq lost/miss/dup"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------- ----- ------- -------------- -------------- -------- \
    ------------- ------------- -------------------- --------------------
for scenario in $SCENARIOS; do
    for qos in $QOSES; do
        for transport in $TRANSPORTS; do
            bench ours "$scenario" "$qos" "$transport"
            read -r o_rate o_lost o_miss o_dup o_status o_cpu <<<"$RESULT"
            bench mosquitto "$scenario" "$qos" "$transport"
            read -r m_rate m_lost m_miss m_dup m_status m_cpu <<<"$RESULT"
            ratio=$(python3 -c 'import sys; o, m = map(float, sys.argv[1:]); print(f"{o/m:.2f}" if m else "-")' "$o_rate" "$m_rate")
            [[ $o_status == ok ]] || FAILED=1
            printf '| %-8s | %-3s | %-5s | %12s | %12s | %6s | %11s | %11s | %-18s | %-18s |\n' \
                "$scenario" "$qos" "$transport" "$o_rate" "$m_rate" "$ratio" "$o_cpu" "$m_cpu" \
                "$o_lost/$o_miss/$o_dup ${o_status/ok/}" "$m_lost/$m_miss/$m_dup ${m_status/ok/}"
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exit $FAILED
