#!/usr/bin/env bash
# User-space instructions per request of the e2e bench's server under load (valgrind's
# callgrind: the same count whatever else the machine is doing, unlike req/s on a shared VM).
# Each case is served alone under callgrind, driven by `wrk` for a fixed time; the server
# thread's (and, with the gRPC reporter, the reporter thread's) instructions are divided by the
# requests wrk completed. Kernel work (the TCP stack) is not counted. See docs/performance.md.
#
#   benches/e2e-callgrind.sh [seconds of load per case, default 15]
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in valgrind wrk; do
    command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install $tool)" >&2; exit 1; }
done
secs=${1:-15}
bin=$(cargo bench -p skytrace-benches --bench e2e --no-run --message-format=json 2>/dev/null \
    | grep -o '"executable":"[^"]*"' | grep e2e | tail -1 | cut -d'"' -f4)
out=$(mktemp -d)
printf '%-18s %10s %14s %14s\n' case requests "server/req" "reporter/req"
for case in plain pass-layer skytrace+discard skytrace+grpc; do
    E2E_SERVE=$((secs + 20)) valgrind --tool=callgrind --separate-threads=yes \
        --callgrind-out-file="$out/$case.out" "$bin" --bench "e2e/axum_hello/$case" \
        > "$out/$case.serve" 2> "$out/$case.log" &
    pid=$!
    url=""
    for _ in $(seq 100); do
        url=$(awk -v c="$case" '$1 == c { print $2 }' "$out/$case.serve")
        [ -n "$url" ] && break
        sleep 0.2
    done
    [ -n "$url" ] || { echo "the server did not start: $out/$case.log" >&2; exit 1; }
    requests=$(wrk -t1 -c32 -d"${secs}s" "$url" | awk '/requests in/ { print $1 }')
    wait "$pid"
    # Threads are told apart by what they ran.
    thread_ir() { # pattern
        for f in "$out/$case.out"-*; do
            if grep -q "$1" "$f"; then
                grep -m1 '^summary' "$f" | awk '{ print $2 }'
                return
            fi
        done
        echo 0
    }
    server=$(thread_ir 'hyper::proto::h1::dispatch')
    reporter=-
    if [ "$case" = skytrace+grpc ]; then
        reporter=$(printf '%.0f' "$(echo "$(thread_ir 'skytrace::reporter::grpc::Worker') / $requests" | bc -l)")
    fi
    printf '%-18s %10d %14.0f %14s\n' "$case" "$requests" \
        "$(echo "$server / $requests" | bc -l)" "$reporter"
done
rm -rf "$out"
