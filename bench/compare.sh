#!/usr/bin/env bash
# Side-by-side benchmark of raftcd and etcd with raftcd-bench.
#
# Starts a 3-member raftcd cluster and a 3-member etcd cluster on 127.0.0.1 (data dirs on the same disk,
# default durability: fsync on, etcd's default flags), runs every scenario against both in alternation
# (raftcd, etcd, raftcd, etcd, ...) for ROUNDS rounds, then writes bench/results/<date>.md (medians and
# raftcd/etcd ratios), <date>.svg (bar chart of the ratios) and <date>.jsonl (every raw result line).
#
# Phase 1, both clusters up, per round:  put-1c put-64c put-256c range-l-64c range-s-64c txn-put-64c watch-1k
# Phase 2, per round and system, a fresh cluster: load KEYS keys of 256 B, RSS and disk use per member,
#   then restart one follower and time process start -> first successful linearizable get on it.
# Each round also measures the disk's write+fdatasync latency (the floor under a durable put).
#
# Knobs (environment variables):
#   ROUNDS=3           rounds (medians are taken over them)
#   KEYS=1000000       keys loaded for the RSS / restart measurements (KEYS=200000 for a ~15 min run)
#   DURATION=5s        length of each throughput scenario
#   WATCHERS=1000      watchers in watch-1k;  WATCH_PUTS=100 events at WATCH_RATE=20/s
#   LOAD_CLIENTS=64 LOAD_CONNS=8 LOAD_BATCH=16   bulk load: clients, connections, puts per txn
#   SCENARIOS="..."    subset of phase 1 labels (default: all); PHASE2=0 skips load/RSS/restart
#   BASE_PORT=61000    raftcd uses BASE_PORT+1..3 (clients) and +11..13 (peers), etcd the same +100
#   WORKDIR=<dir>      where data dirs and logs go (default: a new dir under /var/tmp); KEEP=1 keeps it
#   OUT=<path.md>      report path (default bench/results/<date>.md)
#   RAFTCD_BIN ETCD_BIN BENCH_BIN   binaries (default target/release/{raftcd,raftcd-bench}, /usr/bin/etcd)
#   BUILD=1            rebuild the release binaries even if present
#
# Example: ROUNDS=2 KEYS=100000 bench/compare.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
KEYS=${KEYS:-1000000}
DURATION=${DURATION:-5s}
WATCHERS=${WATCHERS:-1000}
WATCH_PUTS=${WATCH_PUTS:-100}
WATCH_RATE=${WATCH_RATE:-20}
LOAD_CLIENTS=${LOAD_CLIENTS:-64}
LOAD_CONNS=${LOAD_CONNS:-8}
LOAD_BATCH=${LOAD_BATCH:-16}
ALL_SCENARIOS="put-1c put-64c put-256c range-l-64c range-s-64c txn-put-64c watch-1k"
SCENARIOS=${SCENARIOS:-$ALL_SCENARIOS}
PHASE2=${PHASE2:-1}
BASE_PORT=${BASE_PORT:-61000}
KEEP=${KEEP:-0}
RAFTCD_BIN=${RAFTCD_BIN:-$ROOT/target/release/raftcd}
BENCH_BIN=${BENCH_BIN:-$ROOT/target/release/raftcd-bench}
ETCD_BIN=${ETCD_BIN:-/usr/bin/etcd}
SYSTEMS=(raftcd etcd)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- prerequisites
if [ "${BUILD:-0}" = 1 ] || [ ! -x "$RAFTCD_BIN" ] || [ ! -x "$BENCH_BIN" ]; then
  log "building release binaries"
  (cd "$ROOT" && cargo build --release -p raftcd -p raftcd-bench)
fi
if [ ! -x "$ETCD_BIN" ]; then
  log "etcd missing; installing with scripts/deps.sh"
  "$ROOT/scripts/deps.sh"
fi
[ -x "$ETCD_BIN" ] || die "no etcd at $ETCD_BIN"
# etcd reads ETCD_* variables as flags; make sure none leaks in.
while read -r v; do unset "$v"; done < <(env | sed -n 's/^\(ETCD_[A-Z_]*\)=.*/\1/p')

OWN_WORKDIR=0
if [ -z "${WORKDIR:-}" ]; then WORKDIR=$(mktemp -d /var/tmp/raftcd-compare.XXXXXX); OWN_WORKDIR=1; fi
mkdir -p "$WORKDIR/logs"
DATE=$(date +%Y-%m-%d)
OUT=${OUT:-$ROOT/bench/results/$DATE.md}
[ -e "$OUT" ] && [ -z "${OUT_FORCE:-}" ] && OUT=${OUT%.md}-$(date +%H%M).md
mkdir -p "$(dirname "$OUT")"
RESULTS=${OUT%.md}.jsonl
: >"$RESULTS"

# ---------------------------------------------------------------- processes
declare -A PID      # "system:member" -> pid
declare -A DATADIR  # "system:member" -> data dir

cleanup() {
  local k
  for k in "${!PID[@]}"; do kill -TERM "${PID[$k]}" 2>/dev/null || true; done
  for k in "${!PID[@]}"; do
    for _ in $(seq 50); do kill -0 "${PID[$k]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$k]}" 2>/dev/null || true
    wait "${PID[$k]}" 2>/dev/null || true
  done
  if [ "$KEEP" = 1 ] || [ "$OWN_WORKDIR" = 0 ]; then log "kept $WORKDIR"; else rm -rf "$WORKDIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

offset() { [ "$1" = raftcd ] && echo 0 || echo 100; }
client_port() { echo $((BASE_PORT + $(offset "$1") + $2)); }
peer_port() { echo $((BASE_PORT + $(offset "$1") + 10 + $2)); }
endpoint() { echo "127.0.0.1:$(client_port "$1" "$2")"; }
endpoints() { echo "$(endpoint "$1" 1),$(endpoint "$1" 2),$(endpoint "$1" 3)"; }
initial_cluster() {
  local s=$1
  echo "m1=http://127.0.0.1:$(peer_port "$s" 1),m2=http://127.0.0.1:$(peer_port "$s" 2),m3=http://127.0.0.1:$(peer_port "$s" 3)"
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_member() { # system member
  local s=$1 i=$2 bin
  local cp pp
  cp=$(client_port "$s" "$i"); pp=$(peer_port "$s" "$i")
  [ "$s" = raftcd ] && bin=$RAFTCD_BIN || bin=$ETCD_BIN
  "$bin" --name "m$i" --data-dir "${DATADIR[$s:$i]}" \
    --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
    --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
    --initial-cluster "$(initial_cluster "$s")" --initial-cluster-state new \
    --initial-cluster-token "bench-$s" >>"$WORKDIR/logs/$s-m$i.log" 2>&1 &
  PID[$s:$i]=$!
}

stop_member() { # system member
  local k="$1:$2"
  [ -n "${PID[$k]:-}" ] || return 0
  kill -TERM "${PID[$k]}" 2>/dev/null || true
  for _ in $(seq 300); do kill -0 "${PID[$k]}" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "${PID[$k]}" 2>/dev/null || true
  wait "${PID[$k]}" 2>/dev/null || true
  unset "PID[$k]"
}

start_cluster() { # system generation
  local s=$1 gen=$2 i
  for i in 1 2 3; do
    port_busy "$(client_port "$s" "$i")" && die "port $(client_port "$s" "$i") is in use (set BASE_PORT)"
    port_busy "$(peer_port "$s" "$i")" && die "port $(peer_port "$s" "$i") is in use (set BASE_PORT)"
  done
  for i in 1 2 3; do
    DATADIR[$s:$i]=$WORKDIR/data/$s-$gen/m$i
    mkdir -p "$(dirname "${DATADIR[$s:$i]}")"
    start_member "$s" "$i"
  done
  "$BENCH_BIN" --endpoints "$(endpoints "$s")" status --wait 60s --json-only >/dev/null \
    || die "$s cluster did not come up; see $WORKDIR/logs (KEEP=1 keeps them)"
  log "$s cluster up (gen $gen)"
}

stop_cluster() { # system
  local i
  for i in 1 2 3; do stop_member "$1" "$i"; done
  rm -rf "$WORKDIR/data/$1-"*
}

# ---------------------------------------------------------------- running scenarios
# bench LABEL SYSTEM ROUND ARGS... : runs raftcd-bench, appends its JSON line to $RESULTS.
bench() {
  local label=$1 s=$2 r=$3
  shift 3
  local out="$WORKDIR/logs/$label-$s-$r.txt"
  if "$BENCH_BIN" "$@" --tag "system=$s" --tag "round=$r" --tag "label=$label" >"$out" 2>&1; then
    local line
    line=$(tail -n 1 "$out")
    echo "$line" >>"$RESULTS"
    log "$(printf '%-14s %-6s r%s  %s' "$label" "$s" "$r" "$(summary "$line")")"
  else
    log "WARNING: $label on $s (round $r) failed: $(tail -n 3 "$out" | tr '\n' ' ')"
  fi
}

# A short human summary of a JSON result line.
summary() {
  local line=$1 k v out=""
  for k in ops_per_sec keys_per_sec p50_ms p99_ms errors missed rss_mib_mean disk_mib_mean secs; do
    v=$(printf '%s' "$line" | grep -o "\"$k\":[0-9.eE+-]*" | head -n 1 | cut -d: -f2 || true)
    case $v in "" | 0 | 0.0) ;; *) out="$out $k=$v" ;; esac
  done
  echo "$out"
}

run_scenario() { # label system round
  local label=$1 s=$2 r=$3
  local eps
  eps=$(endpoints "$s")
  local write=(--key-size 8 --val-size 256 --key-space-size 100000)
  case $label in
    put-1c) bench "$label" "$s" "$r" --endpoints "$eps" --target-leader --clients 1 --conns 1 --duration "$DURATION" put "${write[@]}" ;;
    put-64c) bench "$label" "$s" "$r" --endpoints "$eps" --target-leader --clients 64 --conns 8 --duration "$DURATION" put "${write[@]}" ;;
    put-256c) bench "$label" "$s" "$r" --endpoints "$eps" --target-leader --clients 256 --conns 16 --duration "$DURATION" put "${write[@]}" ;;
    range-l-64c) bench "$label" "$s" "$r" --endpoints "$eps" --clients 64 --conns 8 --duration "$DURATION" range --consistency l ;;
    range-s-64c) bench "$label" "$s" "$r" --endpoints "$eps" --clients 64 --conns 8 --duration "$DURATION" range --consistency s ;;
    txn-put-64c) bench "$label" "$s" "$r" --endpoints "$eps" --target-leader --clients 64 --conns 8 --duration "$DURATION" txn-put "${write[@]}" ;;
    watch-1k) bench "$label" "$s" "$r" --endpoints "$eps" --target-leader --conns 3 \
      watch --watchers "$WATCHERS" --streams 10 --puts "$WATCH_PUTS" --put-rate "$WATCH_RATE" --drain-timeout 30s ;;
    *) die "unknown scenario $label (known: $ALL_SCENARIOS)" ;;
  esac
}

leader_index() { # system -> 0-based index of the leader among its endpoints
  "$BENCH_BIN" --endpoints "$(endpoints "$1")" status --wait 30s --json-only | tail -n 1 \
    | sed -n 's/.*"leader_index":\([0-9]*\).*/\1/p'
}

# ---------------------------------------------------------------- the run
log "workdir $WORKDIR; results -> $OUT"
T0=$(date +%s)

for r in $(seq "$ROUNDS"); do
  bench fsync disk "$r" fsync --dir "$WORKDIR" --count 200 --size 4096
  bench fsync-append disk "$r" fsync --dir "$WORKDIR" --count 200 --size 4096 --append
done

if [ -n "$SCENARIOS" ]; then
  for s in "${SYSTEMS[@]}"; do start_cluster "$s" tput; done
  for r in $(seq "$ROUNDS"); do
    for label in $SCENARIOS; do
      for s in "${SYSTEMS[@]}"; do run_scenario "$label" "$s" "$r"; done
    done
  done
  for s in "${SYSTEMS[@]}"; do stop_cluster "$s"; done
fi

if [ "$PHASE2" = 1 ]; then
  for r in $(seq "$ROUNDS"); do
    for s in "${SYSTEMS[@]}"; do
      start_cluster "$s" "load$r"
      bench load "$s" "$r" --endpoints "$(endpoints "$s")" --target-leader --clients "$LOAD_CLIENTS" --conns "$LOAD_CONNS" \
        load --keys "$KEYS" --val-size 256 --batch "$LOAD_BATCH"
      sleep 2 # let followers finish applying before measuring them
      bench rss "$s" "$r" footprint --pid "${PID[$s:1]}" --pid "${PID[$s:2]}" --pid "${PID[$s:3]}" \
        --dir "${DATADIR[$s:1]}" --dir "${DATADIR[$s:2]}" --dir "${DATADIR[$s:3]}"
      li=$(leader_index "$s" || true)
      f=$(( (${li:-0} + 1) % 3 + 1 )) # a follower, 1-based
      stop_member "$s" "$f"
      start_ns=$(date +%s%N)
      start_member "$s" "$f"
      bench restart "$s" "$r" --endpoints "$(endpoint "$s" "$f")" ready --since-unix-ns "$start_ns" --timeout 600s
      bench rss-restarted "$s" "$r" footprint --pid "${PID[$s:$f]}"
      stop_cluster "$s"
    done
  done
fi

elapsed=$(( $(date +%s) - T0 ))
rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(cd "$ROOT" && git status --porcelain 2>/dev/null | grep -q . && echo "+uncommitted" || true)
"$BENCH_BIN" report --input "$RESULTS" --md "$OUT" --svg "${OUT%.md}.svg" \
  --meta "date=$(date -u +%Y-%m-%dT%H:%MZ)" \
  --meta "machine=$(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr); data on $(df -P "$WORKDIR" | awk 'NR==2 {print $1}')" \
  --meta "raftcd=$rev$dirty (release build)" \
  --meta "etcd=$("$ETCD_BIN" --version 2>/dev/null | head -n 1)" \
  --meta "settings=ROUNDS=$ROUNDS KEYS=$KEYS DURATION=$DURATION WATCHERS=$WATCHERS LOAD_BATCH=$LOAD_BATCH; 3 members each on 127.0.0.1, fsync on; took ${elapsed}s" \
  --meta "raw=$(basename "$RESULTS") (one JSON line per scenario run)"
log "wrote $OUT, ${OUT%.md}.svg and $RESULTS in ${elapsed}s"
