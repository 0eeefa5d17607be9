#!/usr/bin/env bash
# abpkg.sh OLD NEW PKG BENCH [ROUNDS] [BENCHTIME]: one benchmark of any package at two git
# revisions, in one interleaved run (old, new, old, new...), so that both see the same machine.
# Unpinned: for throughput benchmarks with goroutines of their own (pin latency ones: ab.sh).
# Prints each result line, then the median of each reported unit per side and benchmark.
#   bench/abpkg.sh 630547c HEAD ./cluster '^BenchmarkEvents$' 5 20000x
set -euo pipefail
usage='usage: abpkg.sh OLD NEW PKG BENCH [ROUNDS] [BENCHTIME]'
old=${1:?$usage} new=${2:?$usage} pkg=${3:?$usage} bench=${4:?$usage}
rounds=${5:-5} benchtime=${6:-1s}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for side in old new; do
	rev=${!side}
	mkdir "$tmp/$side"
	git -C "$root" archive "$rev" | tar -x -C "$tmp/$side"
	(cd "$tmp/$side" && go test -c -o "$tmp/$side.test" "$pkg")
done
dir=${pkg#./}
for i in $(seq "$rounds"); do
	for side in old new; do
		(cd "$tmp/$side/$dir" && "$tmp/$side.test" -test.run '^$' -test.bench "$bench" \
			-test.benchtime "$benchtime" -test.count 1) | grep '^Benchmark' | sed "s/^/$side $i /" | tee -a "$tmp/all"
	done
done
# Medians: for each side, benchmark and unit (the fields after the iteration count, value unit).
awk '{for (f = 5; f < NF; f += 2) print $1, $3, $(f+1), $f}' "$tmp/all" | sort -k1,1 -k2,2 -k3,3 -k4,4g |
	awk '{k = $1 " " $2 " " $3; v[k, ++n[k]] = $4} END {for (k in n) {m = n[k]; print k, (m % 2 ? v[k, (m+1)/2] : (v[k, m/2] + v[k, m/2+1]) / 2)}}' |
	sort | awk 'BEGIN {print "median:"} {print "  " $0}'
