#!/usr/bin/env bash
# Instruction counts (valgrind's callgrind: repeatable, whatever else the machine is doing) for
# the per-span, segment, propagation and axum cases. See docs/performance.md.
#
#   benches/callgrind.sh            # prints one line per case: instructions per operation
#   OUT=/tmp/cg benches/callgrind.sh   # also keeps the callgrind.out files there
#
# Builds the `profile` example with line tables in its own target dir (target/profiling), so
# `callgrind_annotate` can attribute the counts to source lines.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=target/profiling \
    cargo build --release -q -p skytrace-benches --features profile --example profile
bin=target/profiling/release/examples/profile
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

count() { # case, toggle pattern, operations counted
    local file="$out/$(echo "$1" | tr ':/' '__').out"
    local ir
    valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect="$2" "$bin" "$1" "$3" \
        > /dev/null 2> "$file.log"
    ir=$(grep -o 'Collected : [0-9]*' "$file.log" | grep -o '[0-9]*$')
    printf '%-28s %10.0f instructions per %s\n' "$1" "$(echo "$ir / $4" | bc -l)" "$5"
}

# Per span: only the traced functions are counted (`traced::*`), 10,000 calls + 1,000 warm-up.
for case in plain floor/two_tsc_reads floor/two_system_time_reads skytrace/sampled skytrace/feature_off skytrace/no_trace skytrace/unsampled skytrace/async fastrace/async tracing/async \
    skywalking/sampled fastrace/sampled tracing/registry; do
    count "span:$case" '*traced::*' 10000 11000 call
done
for case in segment:skytrace segment:skywalking entry:skytrace entry:skytrace-global sw8:encode sw8:encode-skywalking \
    sw8:decode sw8:decode-skywalking axum:plain axum:pass-layer axum:skytrace axum:skytrace-global; do
    count "$case" '*profile_loop*' 2000 2000 op
done
echo "callgrind files: $out"
