#!/usr/bin/env bash
# Runs mqtt-soak against our laptop-broker and then against Mosquitto, in
# one sitting, with the same mix and the same settings, and keeps each
# report (one JSON line) and the samples (RSS, descriptors, tasks).
#
#   bench/soak.sh                     # 300 s per broker
#   DURATION=600 bench/soak.sh
#   BROKERS=ours bench/soak.sh        # ours only (no Mosquitto needed)
#   OUT=/tmp/soak-results bench/soak.sh
#
# Each broker gets a plain and a mutual-TLS listener (require_certificate
# true, certificates from gen-certs) on free loopback ports. Ours also gets
# `write_timeout 5` (this broker's key; Mosquitto has none) and a
# `metrics_listener`, from which the soak reads the runtime's live tasks.
# Exit status: 1 if any soak reported a lost message or a leak.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
DURATION=${DURATION:-300}
BROKERS=${BROKERS:-"ours mosquitto"}
SOAK_ARGS=${SOAK_ARGS:-"--sample-every 10"}

SCRIPT=soak.sh
# The results stay in $WORK/results (or $OUT); only the certificates go.
KEEP_WORK=1
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_setup soak soak mqtt-soak
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"

status=0
for name in $BROKERS; do
    PLAIN=$(free_port); TLS=$(free_port); METRICS=$(free_port)
    conf=$WORK/$name.conf
    {
        echo "per_listener_settings false"
        echo "allow_anonymous true"
        echo "listener $PLAIN 127.0.0.1"
        echo "listener $TLS 127.0.0.1"
        echo "cafile $WORK/certs/ca.crt"
        echo "certfile $WORK/certs/server.crt"
        echo "keyfile $WORK/certs/server.key"
        echo "require_certificate true"
    } >"$conf"
    extra=()
    case $name in
        ours)
            echo "write_timeout 5" >>"$conf"
            echo "metrics_listener $METRICS 127.0.0.1" >>"$conf"
            "$BIN/laptop-broker" -c "$conf" 2>"$OUT/$name.log" &
            extra=(--metrics-port "$METRICS")
            ;;
        mosquitto)
            if [[ ! -x $MOSQUITTO ]]; then
                echo "soak.sh: Mosquitto not found (set MOSQUITTO=/path/to/mosquitto)" >&2
                exit 2
            fi
            [[ $(id -u) == 0 ]] && echo "user root" >>"$conf"
            "$MOSQUITTO" -c "$conf" 2>"$OUT/$name.log" &
            ;;
        *) echo "soak.sh: unknown broker $name" >&2; exit 2 ;;
    esac
    BROKER_PID=$!
    for _ in $(seq 50); do
        (exec 3<>/dev/tcp/127.0.0.1/"$PLAIN") 2>/dev/null && break
        sleep 0.1
    done
    echo "== $name (pid $BROKER_PID), $DURATION s" >&2
    # shellcheck disable=SC2086
    "$BIN/mqtt-soak" -p "$PLAIN" --tls-port "$TLS" --cafile "$WORK/certs/ca.crt" \
        --cert "$WORK/certs/client.crt" --key "$WORK/certs/client.key" \
        --broker-pid "$BROKER_PID" --duration "$DURATION" "${extra[@]}" $SOAK_ARGS --json \
        >"$OUT/$name.json" 2> >(tee "$OUT/$name.samples" >&2) || status=1
    stop_broker
    cat "$OUT/$name.json"
done
echo "results in $OUT" >&2
exit $status
