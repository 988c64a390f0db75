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

echo "building laptop-broker, gen-certs and mqtt-soak (release) into $CARGO_TARGET_DIR ..." >&2
(cd "$ROOT" && cargo build --release --quiet \
    --example laptop-broker --example gen-certs --example mqtt-soak)
BIN=$CARGO_TARGET_DIR/release/examples

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mqtt-soak.XXXXXX")
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
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
    rm -rf "$WORK/certs"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/gen-certs" --out "$WORK/certs" --server-name 127.0.0.1 --client-name soak >/dev/null
chmod 755 "$WORK" "$WORK/certs"
chmod 644 "$WORK"/certs/*
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

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
