#!/usr/bin/env bash
# ab.sh OLD NEW [BENCH] [ROUNDS]: one benchmark of the root package at two git revisions, in one
# interleaved run pinned to CPU 0 (the worker inherits the affinity), so that both see the same
# machine. Prints each round and the median of each side, and their ratio.
#   bench/ab.sh c660723 HEAD                 # the null call before and after a change
#   bench/ab.sh main HEAD '^BenchmarkNullCall$' 12
set -euo pipefail
old=${1:?usage: ab.sh OLD NEW [BENCH] [ROUNDS]} new=${2:?usage: ab.sh OLD NEW [BENCH] [ROUNDS]}
bench=${3:-'^BenchmarkNullCall$'} rounds=${4:-8}
root=$(git rev-parse --show-toplevel)
tmp=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tmp/old" 2>/dev/null; git -C "$root" worktree remove --force "$tmp/new" 2>/dev/null; rm -rf "$tmp"' EXIT
for side in old new; do
	rev=${!side}
	git -C "$root" worktree add -q --detach "$tmp/$side" "$rev"
	(cd "$tmp/$side" && go test -c -o "$tmp/$side.test" .)
done
for i in $(seq "$rounds"); do
	for side in old new; do
		ns=$(cd "$tmp/$side" && taskset -c 0 "$tmp/$side.test" -test.run '^$' -test.bench "$bench" \
			-test.benchtime 50000x -test.count 1 | awk '/ns\/op/ {print $3; exit}')
		echo "$side $i $ns"
		echo "$ns" >> "$tmp/$side.ns"
	done
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mo=$(median "$tmp/old.ns") mn=$(median "$tmp/new.ns")
echo "median ns/op: old ($old) $mo, new ($new) $mn, new/old $(awk -v a="$mn" -v b="$mo" 'BEGIN {printf "%.3f", a/b}')"
