#!/usr/bin/env bash
# User-space instructions per request of an axum hello-world service under load, skytrace and its
# peers, over every thread of the service's process (valgrind's callgrind: the same count
# whatever else the machine is doing, unlike req/s on a shared VM). Kernel work (the TCP stack)
# is not counted. See docs/performance.md.
#
# Each case is the e2e bench (benches/benches/e2e.rs) serving that case alone under callgrind.
# The collector its gRPC cases send to runs in another process, natively: every thread under
# callgrind is the service's (its workers, skytrace's reporter, fastrace's collector, the
# OpenTelemetry SDK's batch processor). `wrk` warms each case up for a second (connections,
# allocator, the reporter's connection to the collector), then callgrind's counters are zeroed,
# `wrk` loads the server for the time given, the reporter is given a second to deliver, and the
# counters are dumped: startup and warm-up are not counted.
#
#   benches/e2e-callgrind.sh [seconds of load per case, default 4] [case ...]
#   OUT=/tmp/e2e benches/e2e-callgrind.sh 4 skytrace+grpc   # keeps the dumps (one per thread)
#
# Prints a markdown table: per request, all threads, the case's extra over `plain` (which must
# be among the cases for that column), and the part of it on skytrace's reporter thread.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind callgrind_control wrk; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install valgrind wrk)" >&2; exit 1; }
done
secs=${1:-4}
# Connections wrk keeps open (`CONNECTIONS=1`: one request at a time, the same path each time)
conns=${CONNECTIONS:-32}
shift || true
if [ $# -gt 0 ]; then
    cases=("$@")
else
    cases=(plain pass-layer skytrace+discard skytrace+grpc skywalking+discard fastrace+discard
        tracing+registry bridge+discard bridge+grpc otel+batch)
fi
# `E2E_BIN=path`: a bench binary built already (no cargo run).
bin=${E2E_BIN:-$(cargo bench -p skytrace-benches --bench e2e --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | grep e2e | tail -1 | cut -d'"' -f4)}
[ -x "$bin" ] || { echo "the e2e bench did not build: cargo bench -p skytrace-benches --bench e2e --no-run" >&2; exit 1; }
out=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$out"
}
trap cleanup EXIT

# Waits for `pattern`'s line in `file`; prints its second field.
await_line() { # file pattern
    local found=""
    for _ in $(seq 300); do
        found=$(awk -v c="$2" '$1 == c { print $2 }' "$1" 2>/dev/null)
        [ -n "$found" ] && { echo "$found"; return; }
        sleep 0.2
    done
    echo "no '$2' line in $1" >&2
    return 1
}

E2E_COLLECTOR_SERVE=1 "$bin" > "$out/collector" 2>&1 &
pids+=($!)
collector=$(await_line "$out/collector" collector)

printf '| case | requests | instructions/req | extra over plain | on the reporter thread |\n'
printf '|---|--:|--:|--:|--:|\n'
plain=""
for case in "${cases[@]}"; do
    rm -f "$out/$case".*
    E2E_COLLECTOR=$collector E2E_SERVE=100000 valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$out/$case.cg" "$bin" --bench "e2e/axum_hello/$case" \
        > "$out/$case.serve" 2> "$out/$case.log" &
    vg=$!
    pids+=("$vg")
    url=$(await_line "$out/$case.serve" "$case") || { cat "$out/$case.log" >&2; exit 1; }
    wrk -t1 -c"$conns" -d1s "$url" > /dev/null
    sleep 1
    callgrind_control -z "$vg" > /dev/null 2>&1
    requests=$(wrk -t1 -c"$conns" -d"${secs}s" "$url" | awk '/requests in/ { print $1 }')
    sleep 1
    callgrind_control -d "$vg" > /dev/null 2>&1
    kill "$vg" 2>/dev/null || true
    wait "$vg" 2>/dev/null || true
    # The dump: one file per thread (`$case.cg.1-NN`).
    total=0
    reporter=0
    for f in "$out/$case.cg".1-*; do
        ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$f")
        total=$((total + ${ir:-0}))
        if grep -q 'skytrace::reporter::worker' "$f"; then
            reporter=$((reporter + ${ir:-0}))
        fi
    done
    per=$(echo "$total / $requests" | bc -l)
    [ "$case" = plain ] && plain=$per
    extra=-
    [ -n "$plain" ] && extra=$(printf '%+.1f k' "$(echo "($per - $plain) / 1000" | bc -l)")
    rep=-
    [ "$reporter" -gt 0 ] && rep=$(printf '%.0f' "$(echo "$reporter / $requests" | bc -l)")
    printf '| %s | %d | %.0f | %s | %s |\n' "$case" "$requests" "$per" "$extra" "$rep"
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT" && cp "$out/$case.cg".1-* "$OUT/"
    fi
    rm -f "$out/$case.cg"*
done
