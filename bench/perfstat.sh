#!/usr/bin/env bash
# perfstat.sh [-c] WHAT N1 N2: software counters per call, both processes, by difference.
# Runs WHAT twice, with N1 and N2 calls, pinned to CPU 0 (CPU=N another, CPU= unpinned), under `perf stat` (children included:
# the worker or the C floor's server), and prints (count at N2 - count at N1) / (N2 - N1) for each
# counter, so that start-up (spawning workers, the runtime's init) cancels out.
#   bench/perfstat.sh '^BenchmarkNullCall$' 10000 60000       # a root-package benchmark (bulkhead)
#   bench/perfstat.sh 'RawSocketpair/stream' 10000 60000      # raw Go, same package
#   bench/perfstat.sh -c 'lat 100000 100' 10000 60000         # the C floor: pingpong lat MS WARMUP N
#   bench/perfstat.sh -c 'echo 1048576 100000' 200 2200       # the C 1 MiB echo: pingpong echo SIZE MS N
#   CPU= bench/perfstat.sh 'NullCallParallel/pipeline=0/socket$' 20000 120000   # unpinned: 16 callers, 2 workers
# Needs perf (Debian: linux-perf) and, for the syscalls: counters, tracefs (root).
set -euo pipefail
cpu=${CPU-0}
pin=()
if [ -n "$cpu" ]; then pin=(taskset -c "$cpu"); fi
c=0
if [ "${1:-}" = -c ]; then c=1; shift; fi
what=${1:?usage: perfstat.sh [-c] WHAT N1 N2} n1=${2:?N1} n2=${3:?N2}
events=${EVENTS:-task-clock,context-switches,page-faults,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_futex,syscalls:sys_enter_nanosleep}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ $c = 1 ]; then
	gcc -O2 -o "$tmp/pingpong" "$root/bench/csrc/pingpong.c"
	run() { "${pin[@]}" perf stat -x, -e "$events" -o "$tmp/$1.csv" "$tmp/pingpong" $what "$1" > /dev/null; }
else
	(cd "$root" && go test -c -o "$tmp/bh.test" .)
	run() { (cd "$root" && "${pin[@]}" perf stat -x, -e "$events" -o "$tmp/$1.csv" "$tmp/bh.test" -test.run '^$' \
		-test.bench "$what" -test.benchtime "${1}x" > /dev/null); }
fi
run "$n1"
run "$n2"
# perf's CSV: value,unit,event,...; task-clock is in msec.
join -t, <(grep -v '^#' "$tmp/$n1.csv" | awk -F, 'NF>2 {print $3","$1}' | sort) \
	<(grep -v '^#' "$tmp/$n2.csv" | awk -F, 'NF>2 {print $3","$1}' | sort) |
	awk -F, -v d=$((n2 - n1)) '{v = ($3 - $2) / d; if ($1 == "task-clock") printf "%-32s %10.2f µs/call\n", $1, v * 1000; else printf "%-32s %10.3f /call\n", $1, v}'
