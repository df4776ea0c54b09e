#!/usr/bin/env bash
# Runs every benchmark group RUNS times (default 3), each group only once the machine is quiet
# (at least QUIET_IDLE percent idle over 3 s, waiting at most QUIET_WAIT seconds), saves each
# run with perf-table, and prints the table over the saved runs.
#
#   benches/run-table.sh            # 3 runs (REQUIRE_SERVICES=1 unless set), the date of today
#   RUNS=5 benches/run-table.sh
#
# Saved runs live in perf-runs/ in cargo's target directory ($CARGO_TARGET_DIR when set;
# delete it to start over). The machine is shared: a group that ran while someone else's job
# was busy shows up as a wide range in the table.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${RUNS:-3}"
QUIET_IDLE="${QUIET_IDLE:-85}"
QUIET_WAIT="${QUIET_WAIT:-600}"
BENCH_GROUPS=(model store bus services harness)

idle_percent() {
    local a b
    read -r _ a1 a2 a3 a4 a5 a6 a7 _ < /proc/stat
    sleep 3
    read -r _ b1 b2 b3 b4 b5 b6 b7 _ < /proc/stat
    a=$((a1 + a2 + a3 + a4 + a5 + a6 + a7))
    b=$((b1 + b2 + b3 + b4 + b5 + b6 + b7))
    echo $(( (b4 - a4) * 100 / (b - a > 0 ? b - a : 1) ))
}

wait_quiet() {
    local waited=0 idle
    while idle=$(idle_percent); [ "$idle" -lt "$QUIET_IDLE" ]; do
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            echo "machine still busy (${idle}% idle) after ${QUIET_WAIT}s; running anyway" >&2
            return
        fi
        echo "waiting for a quiet machine (${idle}% idle)..." >&2
        sleep 10
        waited=$((waited + 13))
    done
}

cargo bench -p benches --no-run
for run in $(seq 1 "$RUNS"); do
    for group in "${BENCH_GROUPS[@]}"; do
        wait_quiet
        echo "== run $run: $group ==" >&2
        REQUIRE_SERVICES="${REQUIRE_SERVICES:-1}" cargo bench -p benches --bench "$group" -- --noplot
    done
    cargo run -q --release -p benches --bin perf-table -- snapshot --label "run-$(date +%Y%m%d-%H%M%S)"
done
cargo run -q --release -p benches --bin perf-table -- report --date "$(date +%Y-%m-%d)"
