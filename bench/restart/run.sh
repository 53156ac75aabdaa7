#!/bin/bash
# Time from a daemon restart to service: SIGKILL memextd while a workload has most of its
# memory evicted, start a new one, and report how long it took to adopt the evicted pages
# (from the daemon's log) and that the workload still verified every byte.
#
#   bench/restart/run.sh [--build DIR] [--footprint 256M] [--budget 32M] [--reps 3]
set -euo pipefail

build=build footprint=256M budget=32M reps=3
while [ $# -gt 0 ]; do
	case "$1" in
	--build) build=$2; shift 2 ;;
	--footprint) footprint=$2; shift 2 ;;
	--budget) budget=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	*) echo "usage: $0 [--build DIR] [--footprint SIZE] [--budget SIZE] [--reps N]" >&2; exit 2 ;;
	esac
done
build=$(realpath "$build")
for f in daemon/memextd preload/libmemext.so tests/integration/wl-random; do
	[ -e "$build/$f" ] || { echo "$0: $build/$f is missing: build first (meson setup build && ninja -C build)" >&2; exit 1; }
done
tmp=$(mktemp -d)
daemon_pid= wl_pid=
cleanup() {
	[ -n "$wl_pid" ] && kill -9 "$wl_pid" 2>/dev/null || true
	[ -n "$daemon_pid" ] && kill -9 "$daemon_pid" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

start_daemon() {
	rm -f "$tmp/s.sock" "$tmp/st.sock"
	"$build/daemon/memextd" --foreground --socket "$tmp/s.sock" --stats-socket "$tmp/st.sock" \
		>>"$tmp/memextd.log" 2>&1 &
	daemon_pid=$!
	for _ in $(seq 200); do [ -S "$tmp/st.sock" ] && return 0; sleep 0.05; done
	echo "$0: memextd did not start; its log:" >&2; tail "$tmp/memextd.log" >&2; exit 1
}

printf '%-4s %14s %12s %12s %10s\n' rep evicted_pages adopt_ms us_per_page verified
for rep in $(seq "$reps"); do
	: >"$tmp/memextd.log"
	start_daemon
	MEMEXT_SOCKET=$tmp/s.sock MEMEXT_BUDGET=$budget LD_PRELOAD=$build/preload/libmemext.so \
		"$build/tests/integration/wl-random" "$footprint" 4 100000 >"$tmp/wl.log" 2>&1 &
	wl_pid=$!
	# Kill once the fill is done and random access runs: most of the footprint is evicted.
	for _ in $(seq 600); do grep -q "^phase random" "$tmp/wl.log" && break; sleep 0.05; done
	sleep 1
	kill -9 "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
	start_daemon
	line=
	for _ in $(seq 600); do
		line=$(grep -o "adopted: [0-9]* evicted pages restored in [0-9.]* ms" "$tmp/memextd.log" || true)
		[ -n "$line" ] && break
		sleep 0.05
	done
	[ -n "$line" ] || { echo "$0: the new memextd adopted nothing; its log:" >&2; tail "$tmp/memextd.log" >&2; exit 1; }
	# The workload runs on under the new daemon and checks every page at its end.
	verified=no
	if wait "$wl_pid" && grep -q "pages verified" "$tmp/wl.log"; then verified=yes; fi
	wl_pid=
	pages=$(echo "$line" | awk '{print $2}') ms=$(echo "$line" | awk '{print $7}')
	printf '%-4s %14s %12s %12.2f %10s\n' "$rep" "$pages" "$ms" \
		"$(echo "$ms $pages" | awk '{print $1 * 1000 / $2}')" "$verified"
	[ "$verified" = yes ] || { echo "$0: the workload failed after the restart:" >&2; tail "$tmp/wl.log" >&2; exit 1; }
	kill "$daemon_pid"; wait "$daemon_pid" 2>/dev/null || true
	daemon_pid=
done
