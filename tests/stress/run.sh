#!/bin/bash
# Runs integration workloads three at a time, round after round, and keeps the log of every
# failure: for races that a serial run of the suite does not show (not part of .ci/run).
#
#   tests/stress/run.sh [--build DIR] [--rounds N]      # logs in a temp dir it names
set -u
build=build rounds=20
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--rounds) rounds=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--rounds N]" >&2; exit 2 ;;
	esac
done
B=$(realpath "$build")
H=$(dirname "$(realpath "$0")")/../integration/harness.py
logs=$(mktemp -d /tmp/memext-stress-XXXXXX)
W=$B/tests/integration
run() { # id name harness-args...
	local id=$1 name=$2 log=$logs/$2-$1.txt
	shift 2
	if MALLOC_PERTURB_=0 python3 "$H" --memextd "$B/daemon/memextd" --memextctl "$B/daemon/memextctl" \
		--shim "$B/preload/libmemext.so" --probe "$W/uffd-probe" --budget 32M --footprint 128M \
		--name "$name" "$@" >"$log" 2>&1; then
		rm -f "$log"
	else
		echo "FAIL $name: $log"
		grep -m3 "MISMATCH\|FAIL" "$log"
	fi
}
echo "logs of failures: $logs"
for round in $(seq "$rounds"); do
	echo "round $round of $rounds"
	run "$round" malloc --footprint 118M --min-pswpin-frac 0.5 -- "$W/wl-malloc" 128M 4 6000 &
	run "$round" dontneed --min-pswpin-frac 0.5 -- "$W/wl-mm" dontneed 128M &
	run "$round" mremap --min-pswpin-frac 0.5 -- "$W/wl-mm" mremap 128M &
	wait
	run "$round" unmap --min-pswpin-frac 0.5 -- "$W/wl-mm" unmap 128M &
	run "$round" random -- "$W/wl-random" 128M 4 12000 &
	run "$round" malloc2 --footprint 118M --min-pswpin-frac 0.5 -- "$W/wl-malloc" 128M 4 6000 &
	wait
done
echo "done; failures, if any, are in $logs"
