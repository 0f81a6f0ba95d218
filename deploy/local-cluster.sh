#!/usr/bin/env bash
# Runs a 3-member raftcd cluster on 127.0.0.1, laid out like etcd's Procfile:
#
#   infra1  client 127.0.0.1:2379   peer 127.0.0.1:2380
#   infra2  client 127.0.0.1:22379  peer 127.0.0.1:22380
#   infra3  client 127.0.0.1:32379  peer 127.0.0.1:32380
#
# Usage: deploy/local-cluster.sh [start|stop|status]
#   start   (default) start the three members in the background, wait until they listen, print the endpoints
#   stop    SIGTERM the members started here (SIGKILL after 10 s) and forget their pids
#   status  show which members run
#
# Data, logs and pid files live in ./local-cluster/ (relative to the current directory; override with
# RAFTCD_LOCAL_CLUSTER_DIR). Starting again after `stop` restarts the same cluster from its data; remove the
# directory for a fresh one. The binary is target/release/raftcd if present, else target/debug/raftcd (built
# with cargo if missing); RAFTCD_BIN overrides.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${RAFTCD_LOCAL_CLUSTER_DIR:-./local-cluster}"
NAMES=(infra1 infra2 infra3)
CLIENT_PORTS=(2379 22379 32379)
PEER_PORTS=(2380 22380 32380)
TOKEN="raftcd-local-cluster"

initial_cluster() {
    local out="" i
    for i in 0 1 2; do
        out+="${out:+,}${NAMES[$i]}=http://127.0.0.1:${PEER_PORTS[$i]}"
    done
    echo "$out"
}

endpoints() {
    local out="" p
    for p in "${CLIENT_PORTS[@]}"; do
        out+="${out:+,}127.0.0.1:$p"
    done
    echo "$out"
}

# The pid recorded for member $1 if that process still runs raftcd, else nothing.
running_pid() {
    local f="$DIR/$1.pid" pid
    [[ -f "$f" ]] || return 0
    pid="$(cat "$f")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q raftcd; then
        echo "$pid"
    fi
}

find_bin() {
    if [[ -n "${RAFTCD_BIN:-}" ]]; then
        echo "$RAFTCD_BIN"
        return
    fi
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    if [[ -x "$target/release/raftcd" ]]; then
        echo "$target/release/raftcd"
        return
    fi
    if [[ ! -x "$target/debug/raftcd" ]]; then
        echo "building raftcd (debug)..." >&2
        (cd "$ROOT" && cargo build -p raftcd --bin raftcd >&2)
    fi
    echo "$target/debug/raftcd"
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    mkdir -p "$DIR"
    local bin i name pid started=()
    bin="$(find_bin)"
    for i in 0 1 2; do
        name="${NAMES[$i]}"
        pid="$(running_pid "$name")"
        if [[ -n "$pid" ]]; then
            echo "$name already runs (pid $pid)"
            continue
        fi
        if port_open "${CLIENT_PORTS[$i]}" || port_open "${PEER_PORTS[$i]}"; then
            echo "error: port ${CLIENT_PORTS[$i]} or ${PEER_PORTS[$i]} is already in use; not starting $name" >&2
            exit 1
        fi
        nohup "$bin" \
            --name "$name" \
            --data-dir "$DIR/$name.raftcd" \
            --listen-client-urls "http://127.0.0.1:${CLIENT_PORTS[$i]}" \
            --advertise-client-urls "http://127.0.0.1:${CLIENT_PORTS[$i]}" \
            --listen-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${PEER_PORTS[$i]}" \
            --initial-cluster "$(initial_cluster)" \
            --initial-cluster-token "$TOKEN" \
            --initial-cluster-state new \
            >>"$DIR/$name.log" 2>&1 </dev/null &
        echo $! >"$DIR/$name.pid"
        started+=("$i")
    done
    for i in ${started[@]+"${started[@]}"}; do
        name="${NAMES[$i]}"
        pid="$(cat "$DIR/$name.pid")"
        for _ in $(seq 1 200); do
            port_open "${CLIENT_PORTS[$i]}" && break
            if ! kill -0 "$pid" 2>/dev/null; then
                echo "error: $name exited; last lines of $DIR/$name.log:" >&2
                tail -n 20 "$DIR/$name.log" >&2
                exit 1
            fi
            sleep 0.1
        done
        port_open "${CLIENT_PORTS[$i]}" || { echo "error: $name does not listen on ${CLIENT_PORTS[$i]} after 20 s" >&2; exit 1; }
        echo "$name  pid $pid  client http://127.0.0.1:${CLIENT_PORTS[$i]}  peer http://127.0.0.1:${PEER_PORTS[$i]}  log $DIR/$name.log"
    done
    echo
    echo "endpoints: $(endpoints)"
    echo "try:       ETCDCTL_API=3 etcdctl --endpoints $(endpoints) endpoint status -w table"
    echo "stop with: $0 stop"
}

stop() {
    local name pid
    for name in "${NAMES[@]}"; do
        pid="$(running_pid "$name")"
        rm -f "$DIR/$name.pid"
        [[ -n "$pid" ]] || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$name (pid $pid) ignored SIGTERM for 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "stopped $name (pid $pid)"
    done
}

status() {
    local i name pid
    for i in 0 1 2; do
        name="${NAMES[$i]}"
        pid="$(running_pid "$name")"
        if [[ -n "$pid" ]]; then
            echo "$name  running (pid $pid)  client 127.0.0.1:${CLIENT_PORTS[$i]}"
        else
            echo "$name  stopped"
        fi
    done
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 [start|stop|status]" >&2
        exit 2
        ;;
esac
