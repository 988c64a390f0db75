#!/usr/bin/env bash
# Many connections to one broker: our laptop-broker against Mosquitto in one
# sitting, with examples/mqtt-swarm.rs. For each connection count and link
# (plain TCP, mutual TLS) and each broker, on a fresh broker: connect N
# clients, let them idle, subscribe them all to one topic, fan one message
# out to all of them. Prints the broker's RSS growth per idle connection,
# connections/s, peak RSS (VmHWM), the time until the last subscriber had
# the message, and the ratios ours/Mosquitto.
#
#   bench/connections.sh                      # 5000 and the largest count the file limit allows (at most 100000)
#   COUNTS="5000 50000 100000" bench/connections.sh
#   LINKS=plain COUNTS=100000 bench/connections.sh
#   MOSQUITTO=/usr/local/sbin/mosquitto bench/connections.sh
#
# The broker and mqtt-swarm each need one file descriptor per connection:
# the script raises its soft limit to the hard limit (`ulimit -n`), which
# both inherit. For 100,000 connections run it where the hard limit allows
# it (`ulimit -Hn`; as root `ulimit -n 250000` first; see
# docs/benchmarks.md for the sysctl settings). Exit status: 1 if any run
# had a failed connection, subscription or missing delivery, else 0.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOSQUITTO=${MOSQUITTO:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
LINKS=${LINKS:-"plain mtls"}
BROKERS=${BROKERS:-"ours mosquitto"}
SWARM_ARGS=${SWARM_ARGS:-}

if [[ ! -x $MOSQUITTO ]]; then
    echo "connections.sh: Mosquitto not found (set MOSQUITTO=/path/to/mosquitto)" >&2
    exit 2
fi

# Every connection is a descriptor in the broker and one in mqtt-swarm.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
if [[ -z ${COUNTS:-} ]]; then
    if [[ $FD_LIMIT == unlimited ]]; then
        BIG=100000
    else
        # Room for the broker's and the tool's own descriptors, in thousands.
        BIG=$(((FD_LIMIT - 200) / 1000 * 1000))
        ((BIG > 100000)) && BIG=100000
    fi
    COUNTS="5000 $BIG"
    if ((BIG <= 5000)); then COUNTS=$BIG; fi
fi

SCRIPT=connections.sh
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_setup connections client mqtt-swarm

# swarm NAME N LINK: sets RESULT to the tool's JSON (or "" if it failed to run).
swarm() {
    local name=$1 n=$2 link=$3 status=0
    local -a tls=()
    if [[ $link == mtls ]]; then
        tls=(--cafile "$WORK/certs/ca.crt" --cert "$WORK/certs/client.crt" --key "$WORK/certs/client.key")
    fi
    start_broker "$name" "$link" "max_connections -1"
    # shellcheck disable=SC2086
    RESULT=$("$BIN/mqtt-swarm" -c "$n" -p "$PORT" --broker-pid "$BROKER_PID" "${tls[@]}" \
        --subscribe swarm/all --fan-out $SWARM_ARGS --json 2>"$WORK/swarm.err") || status=$?
    stop_broker
    if ((status != 0)); then
        echo "connections.sh: $name, $n connections over $link: mqtt-swarm exited with $status" >&2
        cat "$WORK/swarm.err" >&2
        FAILED=1
    fi
    echo "$name $n $link: $RESULT" >>"$WORK/results.txt"
}

echo "machine: $(nproc) cores, $(uname -sr), file limit $FD_LIMIT, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "mosquitto: $("$MOSQUITTO" -h 2>/dev/null | head -1 || true)" >&2
echo "command: mqtt-swarm -c N -p PORT --broker-pid PID [--cafile --cert --key] --subscribe swarm/all --fan-out $SWARM_ARGS --json" >&2
FAILED=0
printf '| %-6s | %-5s | %-22s | %-22s | %-22s | %-22s | %-22s | %-9s |\n' \
    N link "bytes/idle conn o/m" "connect/s o/m" "peak RSS MiB o/m" "SUBACKs s o/m" \
    "last subscriber ms o/m" "missing"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' -------- ------- ------------------------ \
    ------------------------ ------------------------ ------------------------ \
    ------------------------ -----------
for n in $COUNTS; do
    for link in $LINKS; do
        declare -A json=()
        for name in $BROKERS; do
            swarm "$name" "$n" "$link"
            json[$name]=$RESULT
        done
        python3 - "$n" "$link" "${json[ours]:-}" "${json[mosquitto]:-}" <<'EOF'
import json, sys
n, link, ours, mosq = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def load(s):
    try:
        return json.loads(s)
    except ValueError:
        return None
o, m = load(ours), load(mosq)
def get(r, f):
    if r is None:
        return None
    try:
        return f(r)
    except (KeyError, TypeError):
        return None
def cell(f, fmt):
    a, b = get(o, f), get(m, f)
    ratio = f"{a / b:.2f}" if a is not None and b else "-"
    show = lambda v: "-" if v is None else format(v, fmt)
    return f"{show(a)} / {show(b)} ({ratio})"
peak = lambda r: max(s["hwm"] for s in r["broker_kib"].values()) / 1024
missing = lambda r: "-" if r is None or r["fan_out"] is None else str(int(n) - r["fan_out"]["received"])
print(f"| {n:<6} | {link:<5} | {cell(lambda r: r['bytes_per_idle_connection'], '.0f'):<22} "
      f"| {cell(lambda r: r['connect']['per_sec'], '.0f'):<22} | {cell(peak, '.1f'):<22} "
      f"| {cell(lambda r: r['subscribe']['secs'], '.3f'):<22} "
      f"| {cell(lambda r: r['fan_out']['last_ms'], '.1f'):<22} | {missing(o) + '/' + missing(m):<9} |")
EOF
        unset json
    done
done
echo "raw results (mqtt-swarm --json per run):" >&2
cat "$WORK/results.txt" >&2
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
exit $FAILED
