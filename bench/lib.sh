# Shared by the bench/*.sh scripts (sourced, not run): building the release
# examples once, a work directory with certificates, free loopback ports,
# and starting laptop-broker or Mosquitto with the same mosquitto.conf.
#
# The sourcing script sets ROOT, CARGO_TARGET_DIR and MOSQUITTO first, and
# SCRIPT (its name, for messages).

# bench_setup NAME CLIENT-NAME EXAMPLE...: builds laptop-broker, gen-certs
# and the given examples (release); sets BIN and WORK (a fresh directory,
# removed on exit unless KEEP_WORK is set), makes a CA, a server
# certificate for 127.0.0.1 and a client certificate CLIENT-NAME in
# $WORK/certs, readable by a Mosquitto that dropped root.
bench_setup() {
    local name=$1 client=$2
    shift 2
    local -a examples=(--example laptop-broker --example gen-certs)
    for e in "$@"; do examples+=(--example "$e"); done
    echo "building laptop-broker, gen-certs and $* (release) into $CARGO_TARGET_DIR ..." >&2
    (cd "$ROOT" && cargo build --release --quiet "${examples[@]}")
    BIN=$CARGO_TARGET_DIR/release/examples
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/mqtt-$name.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    "$BIN/gen-certs" --out "$WORK/certs" --server-name 127.0.0.1 --client-name "$client" >/dev/null
    chmod 755 "$WORK" "$WORK/certs"
    chmod 644 "$WORK"/certs/*
}

BROKER_PID=""
stop_broker() {
    if [[ -n $BROKER_PID ]]; then
        kill "$BROKER_PID" 2>/dev/null || true
        wait "$BROKER_PID" 2>/dev/null || true
        BROKER_PID=""
    fi
}

bench_cleanup() {
    stop_broker
    if [[ -n ${KEEP_WORK:-} ]]; then
        rm -rf "$WORK/certs"
    else
        rm -rf "$WORK"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for_port PORT: 0 once something accepts on it; 1 after 5 s, or as
# soon as $BROKER_PID (when set) has exited.
wait_for_port() {
    local port=$1
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        if [[ -n $BROKER_PID ]] && ! kill -0 "$BROKER_PID" 2>/dev/null; then
            return 1
        fi
        sleep 0.05
    done
    return 1
}

# write_config FILE PORT LINK [LINE...]: the same mosquitto.conf for both
# brokers; LINK tls or mtls adds the certificates and require_certificate.
write_config() {
    local file=$1 port=$2 link=$3
    shift 3
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        if [[ $link == tls || $link == mtls ]]; then
            echo "cafile $WORK/certs/ca.crt"
            echo "certfile $WORK/certs/server.crt"
            echo "keyfile $WORK/certs/server.key"
            echo "require_certificate true"
        fi
        for line in "$@"; do echo "$line"; done
    } >"$file"
}

# start_broker NAME LINK [LINE...]: starts ours or mosquitto on a free port
# with write_config's file; sets PORT and BROKER_PID; exits 2 if it does
# not come up.
start_broker() {
    local name=$1 link=$2 conf
    shift 2
    PORT=$(free_port)
    conf="$WORK/$name-$link.conf"
    write_config "$conf" "$PORT" "$link" "$@"
    if [[ $name == ours ]]; then
        "$BIN/laptop-broker" -c "$conf" >"$WORK/$name.log" 2>&1 &
    else
        if [[ $(id -u) == 0 ]]; then echo "user root" >>"$conf"; fi
        "$MOSQUITTO" -c "$conf" >"$WORK/$name.log" 2>&1 &
    fi
    BROKER_PID=$!
    if ! wait_for_port "$PORT"; then
        echo "$SCRIPT: $name did not start on port $PORT:" >&2
        cat "$WORK/$name.log" >&2
        exit 2
    fi
}
