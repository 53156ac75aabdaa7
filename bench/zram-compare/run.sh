#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/zram-compare/run.sh: issue 6's benchmark. The same workloads, in one run, under
#   native   no limit;
#   kernel   swap on /dev/zram0 (lz4, highest priority) and a memory cgroup v1 whose
#            memory.limit_in_bytes is the budget (swappiness 100);
#   memext   a fresh memextd per workload, the workload under LD_PRELOAD=libmemext.so with
#            MEMEXT_BUDGET = the budget;
# with a footprint of 4x the budget on pages that lz4 compresses about 3x, then the same with a
# budget above the footprint (no pressure). Writes a markdown table, a PNG plot and the raw
# figures; leaves no swap, zram, cgroup or daemon behind, also on failure or Ctrl-C.
# Needs root. Not a test: a full run takes about 7 minutes on a 2-vCPU VM (--reps 1: 4).
#
#   bench/zram-compare/run.sh [--budget 256M] [--footprint SIZE] [--out DIR] [--plot FILE]
#                             [--build DIR] [--workloads "seq zipf ..."] [--reps N] [--perf]
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CMDLINE="$0 $*"
BUILD=/tmp/build-zram-compare
BUDGET=256M
FOOTPRINT=
OUT=
PLOT=
WORKLOADS="seq rand-read rand-write zipf rand-read-4t"
NOPRESSURE="seq rand-read zipf"
CONFIGS="native kernel memext"
REPS=3    # runs of each pressure workload; the report shows the median by pages/s
NP_REPS=5 # runs of each no-pressure workload; the report shows the median by wall time
PERF=0
PERF_WL=rand-read # the workload whose first memext run --perf profiles
QUICK=0
DAEMON_ARGS= # extra memextd options (--daemon-args), e.g. to compare settings
ZIPF_WARMUP=4 # zipf warms up (touches per page of the footprint) until its refaults are steady
NICE=-20 # the benchmark's processes (and their autogroup) take their CPU even on a shared machine
TIMEOUT=300 # seconds one workload may take before it counts as a hang

usage() {
	sed -n '4,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	cat <<-EOF

	  --budget SIZE      memory limit / MEMEXT_BUDGET (default $BUDGET)
	  --footprint SIZE   memory each workload fills (default 4x the budget)
	  --out DIR          results: results.md, results.tsv, raw/ (default a new /tmp dir)
	  --plot FILE        the PNG (default OUT/perf-zram.png)
	  --build DIR        meson build dir, set up if missing (default $BUILD)
	  --workloads LIST   among: $WORKLOADS zipf-4t (default all but zipf-4t)
	  --no-pressure LIST workloads also run with a budget of 2x the footprint
	                     (default "$NOPRESSURE"; "" for none)
	  --configs LIST     a subset of "$CONFIGS" (for a quick look; the report wants all)
	  --reps N           runs of each workload under pressure (default $REPS)
	  --np-reps N        runs of each workload without pressure (default $NP_REPS)
	  --nice N           niceness of the workloads and memextd (default $NICE)
	  --perf             profile memextd during the first memext rand-read run:
	                     raw/memextd.perf-{sym,dso,stat}.txt
	  --perf-workload W  profile the first memext run of W instead (implies --perf)
	  --daemon-args ARGS extra options for every memextd started (e.g. "--fault-threads 1")
	  --quick            a quarter of the touches, no final check of every page
	  --zipf-warmup N    zipf warms up with N touches per page of the footprint before it
	                     is measured (default $ZIPF_WARMUP), under every configuration
	EOF
}

while [ $# -gt 0 ]; do
	case $1 in
	--budget) BUDGET=$2; shift 2 ;;
	--footprint) FOOTPRINT=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--plot) PLOT=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	--workloads) WORKLOADS=$2; shift 2 ;;
	--no-pressure) NOPRESSURE=$2; shift 2 ;;
	--configs) CONFIGS=$2; shift 2 ;;
	--nice) NICE=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--np-reps) NP_REPS=$2; shift 2 ;;
	--perf) PERF=1; shift ;;
	--perf-workload) PERF=1; PERF_WL=$2; shift 2 ;;
	--quick) QUICK=1; shift ;;
	--daemon-args) DAEMON_ARGS=$2; shift 2 ;;
	--zipf-warmup) ZIPF_WARMUP=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

die() {
	echo "run.sh: $*" >&2
	exit 1
}

bytes() { numfmt --from=iec "${1%B}" 2>/dev/null || die "bad size: $1"; }
BUDGET_BYTES=$(bytes "$BUDGET")
FOOTPRINT_BYTES=$(bytes "${FOOTPRINT:-$((BUDGET_BYTES * 4))}")
NP_BUDGET_BYTES=$((FOOTPRINT_BYTES * 2))
PAGES=$((FOOTPRINT_BYTES / 4096))

KSWAP_NAME=zram-compare
. "$SRC/bench/zram-compare/kernel-swap.sh"
kswap_check

if ! command -v gnuplot >/dev/null; then
	echo "run.sh: installing gnuplot-nox" >&2
	apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -qq gnuplot-nox >/dev/null; } ||
		echo "run.sh: no gnuplot: the table only" >&2
fi

# --- build --------------------------------------------------------------------------------
[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$SRC" >/dev/null
ninja -C "$BUILD" bench/zram-compare/workload daemon/memextd daemon/memextctl \
	preload/libmemext.so >/dev/null
DESCRIBE="$(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown)"
WL=$BUILD/bench/zram-compare/workload
MEMEXTD=$BUILD/daemon/memextd
SHIM=$BUILD/preload/libmemext.so

if [ $PERF = 1 ] && ! command -v perf >/dev/null; then
	echo "run.sh: no perf (apt-get install linux-perf): no profile" >&2
	PERF=0
fi

OUT=${OUT:-$(mktemp -d /tmp/memext-zram-compare.XXXXXX)}
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
PLOT=${PLOT:-$OUT/perf-zram.png}
TSV=$OUT/results.tsv
: >"$TSV"
TMPD=$(mktemp -d /tmp/memext-zram-compare-run.XXXXXX)

# --- clean-up: whatever was set up is undone, on any exit ---------------------------------
WL_PID= DPID= PERF_PID= AUTOGROUP_NICE=
cleanup() {
	set +e
	[ -n "$AUTOGROUP_NICE" ] && echo "$AUTOGROUP_NICE" >/proc/$$/autogroup && AUTOGROUP_NICE=
	[ -n "$PERF_PID" ] && kill -INT $PERF_PID 2>/dev/null && wait $PERF_PID 2>/dev/null
	[ -n "$WL_PID" ] && kill -TERM "$WL_PID" 2>/dev/null && wait "$WL_PID" 2>/dev/null
	[ -n "$DPID" ] && stop_daemon
	kswap_cleanup
	rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT
trap 'echo "run.sh: terminated" >&2; exit 143' TERM

# With sched_autogroup on, nice only ranks a process within its session's group: lower the
# group's nice too (restored at exit), or other sessions' work takes half of our CPU.
if [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null)" = 1 ] && [ -w /proc/$$/autogroup ]; then
	AUTOGROUP_NICE=$(awk '{print $3}' /proc/$$/autogroup)
	echo "$NICE" >/proc/$$/autogroup || AUTOGROUP_NICE=
fi

# Stops the memextd of DPID: SIGTERM gives every page back; returns 1 if it had died or hung.
stop_daemon() {
	local rc=0
	if ! kill -0 "$DPID" 2>/dev/null; then
		wait "$DPID" 2>/dev/null
		echo "run.sh: memextd (pid $DPID) had exited with status $?" >&2
		rc=1
	else
		kill -TERM "$DPID"
		for _ in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$DPID" 2>/dev/null; then
			echo "run.sh: memextd (pid $DPID) did not stop within 10 s of SIGTERM: killed" >&2
			kill -KILL "$DPID"
			rc=1
		fi
		wait "$DPID" 2>/dev/null
	fi
	DPID=
	return $rc
}

start_daemon() { # $1: log file
	local d=$TMPD/daemon
	rm -rf "$d" && mkdir -p "$d"
	nice -n "$NICE" "$MEMEXTD" --socket "$d/memextd.sock" --stats-socket "$d/stats.sock" $DAEMON_ARGS >"$1" 2>&1 &
	DPID=$!
	for _ in $(seq 100); do [ -S "$d/stats.sock" ] && [ -S "$d/memextd.sock" ] && return 0; sleep 0.05; done
	die "memextd did not come up: $(cat "$1")"
}

# --- workloads ----------------------------------------------------------------------------
wl_args() {
	local touches=$PAGES
	[ $QUICK = 1 ] && touches=$((PAGES / 4))
	case $1 in
	seq) echo "--mode seq" ;;
	rand-read) echo "--mode rand-read --touches $touches" ;;
	rand-write) echo "--mode rand-write --touches $touches" ;;
	zipf) echo "--mode zipf --touches $((touches * 2)) --warmup $((touches * ZIPF_WARMUP))" ;;
	rand-read-4t) echo "--mode rand-read --threads 4 --touches $touches" ;;
	zipf-4t) echo "--mode zipf --threads 4 --touches $((touches * 2)) --warmup $((touches * ZIPF_WARMUP))" ;;
	*) die "unknown workload $1" ;;
	esac
}

FAILED=()
# run_one CONFIG WORKLOAD BUDGET_BYTES TAG REP [extra workload args]: one process, one TSV line.
run_one() {
	local config=$1 w=$2 budget=$3 tag=$4 rep=$5
	shift 5
	local base=$OUT/raw/$w.$config$tag.r$rep rc=0 t0 t1 load
	local -a cmd=("$WL" $(wl_args "$w") --footprint "$FOOTPRINT_BYTES" --budget "$budget"
		--cdf-out "$base.cdf" "$@")
	# the final check of every page costs a pass over the footprint: in the first run only
	# (without pressure it is cheap, and part of the wall time compared: in every run)
	[ $QUICK = 0 ] && { [ "$rep" = 1 ] || [ -n "$tag" ]; } && cmd+=(--verify-all)
	load=$(cut -d' ' -f1 /proc/loadavg)
	case $config in
	native) ;;
	kernel)
		echo "$budget" >"$CG/memory.limit_in_bytes"
		cmd=(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "${cmd[@]}"
			--helper-pid "$(pgrep -x kswapd0 | head -1 || true)" --zram-mm-stat $ZSYS/mm_stat)
		;;
	memext)
		start_daemon "$base.daemon.log"
		cmd=(env LD_PRELOAD="$SHIM" MEMEXT_SOCKET="$TMPD/daemon/memextd.sock"
			MEMEXT_BUDGET="$budget" MEMEXT_DEBUG=1 "${cmd[@]}" --helper-pid "$DPID"
			--stats-socket "$TMPD/daemon/stats.sock" --stats-out "$base.stats")
		if [ $PERF = 1 ] && [ "$w$tag.$rep" = "$PERF_WL.1" ]; then
			perf record -q -e cpu-clock -F 999 -p "$DPID" -o "$OUT/raw/memextd.perf.data" \
				>/dev/null 2>&1 &
			PERF_PID=$!
			# system calls and context switches per memextd thread (tid order = age)
			perf stat --per-thread -p "$DPID" -o "$OUT/raw/memextd.perf-stat.txt" \
				-e syscalls:sys_enter_epoll_wait,syscalls:sys_enter_read \
				-e syscalls:sys_enter_ioctl,syscalls:sys_enter_process_vm_readv \
				-e sched:sched_switch,sched:sched_wakeup >/dev/null 2>&1 &
			PERF_PID="$PERF_PID $!"
		fi
		;;
	esac
	printf '%-8s %-13s budget %-5s run %s ' "$config" "$w" "$(numfmt --to=iec "$budget")" "$rep" >&2
	echo "${cmd[*]}" >"$base.cmd"
	t0=$(date +%s%N)
	timeout -s KILL $TIMEOUT nice -n "$NICE" "${cmd[@]}" >"$base.out" 2>"$base.err" &
	WL_PID=$!
	wait $WL_PID || rc=$?
	WL_PID=
	t1=$(date +%s%N)
	if [ -n "$PERF_PID" ]; then
		kill -INT $PERF_PID 2>/dev/null; wait $PERF_PID 2>/dev/null || true
		PERF_PID=
	fi
	if [ "$config" = kernel ]; then
		echo "kernel_failcnt=$(cat "$CG/memory.failcnt") kernel_max_usage=$(cat "$CG/memory.max_usage_in_bytes")" >>"$base.out"
		echo 0 >"$CG/memory.max_usage_in_bytes"
	fi
	local why=
	case $rc in
	0) ;;
	3) why="content check failed (corruption), see $base.err" ;;
	137) why="killed: hung for ${TIMEOUT}s or OOM" ;;
	*) why="exit status $rc: $(tail -3 "$base.err" | tr '\n' ' ')" ;;
	esac
	if [ "$config" = memext ]; then
		grep -q "managed by memextd" "$base.err" ||
			why="${why:+$why; }the shim did not attach: $(grep memext "$base.err" | head -1)"
		stop_daemon || why="${why:+$why; }memextd crashed or hung, see $base.daemon.log"
	fi
	local line
	line=$(grep '^RESULT ' "$base.out" | sed 's/^RESULT //') || true
	if [ -n "$why" ] || [ -z "$line" ]; then
		why=${why:-no RESULT line}
		echo "FAILED: $why" >&2
		echo "run.sh: the command was: $(cat "$base.cmd")" >&2
		FAILED+=("$w/$config$tag: $why")
		line="failed=1"
	fi
	echo "config=$config$tag workload=$w rep=$rep budget_bytes=$budget ext_wall_s=$(((t1 - t0) / 1000000))e-3 load1=$load $line" >>"$TSV"
	echo "$line" | grep -o ' pages_per_s=[^ ]*\| fault_pct=[^ ]*\| fault_p50_us=[^ ]*\| fault_p99_us=[^ ]*\| bad=[^ ]*' | tr '\n' ' ' >&2 || true
	echo >&2
}

echo "run.sh: budget $(numfmt --to=iec $BUDGET_BYTES), footprint $(numfmt --to=iec $FOOTPRINT_BYTES), results in $OUT" >&2
kswap_setup $((FOOTPRINT_BYTES * 2))
# The configurations in the given order in odd repetitions, reversed in even ones: whatever
# one run leaves behind (fragmented memory, a warm or cold cache) or a host slowing down
# over the seconds of a repetition then favours neither side of a memext / kernel pair.
configs_of_rep() {
	if [ $(($1 % 2)) = 1 ]; then echo $CONFIGS; else echo $CONFIGS | tr ' ' '\n' | tac | tr '\n' ' '; fi
}
for rep in $(seq "$REPS"); do
	for w in $WORKLOADS; do
		for config in $(configs_of_rep "$rep"); do
			run_one $config "$w" $BUDGET_BYTES "" "$rep"
		done
	done
done
for rep in $(seq "$NP_REPS"); do
	for w in $NOPRESSURE; do
		for config in $(configs_of_rep "$rep"); do
			run_one $config "$w" $NP_BUDGET_BYTES "-nopressure" "$rep" --no-classify
		done
	done
done
cleanup
trap - EXIT

# --- the report -----------------------------------------------------------------------------
{
	echo "machine: $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
	echo "memext: $DESCRIBE when built, $(date -u +%Y-%m-%dT%H:%MZ); command: $CMDLINE"
	echo "kernel side: $ZRAM lz4, cgroup v1 memory.limit_in_bytes = budget, memory.swappiness 100, other swap: ${OTHER_SWAPS:-none}, vm.page-cluster $(cat /proc/sys/vm/page-cluster), THP $(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled)"
	echo
	awk -f "$SRC/bench/zram-compare/report.awk" -v budget="$BUDGET_BYTES" -v footprint="$FOOTPRINT_BYTES" -v ncpu="$(nproc)" "$TSV"
} >"$OUT/results.md"

if command -v gnuplot >/dev/null; then
	awk -f "$SRC/bench/zram-compare/report.awk" -v mode=bars "$TSV" >"$OUT/raw/bars.dat"
	# the plot shows the median run of each
	awk -f "$SRC/bench/zram-compare/report.awk" -v mode=chosen "$TSV" | while read -r w c r; do
		if [ -f "$OUT/raw/$w.$c.r$r.cdf" ]; then cp "$OUT/raw/$w.$c.r$r.cdf" "$OUT/raw/$w.$c.cdf"; fi
	done
	gnuplot -e "out='$PLOT'; raw='$OUT/raw'; workloads='$WORKLOADS'; title='budget $(numfmt --to=iec $BUDGET_BYTES), footprint $(numfmt --to=iec $FOOTPRINT_BYTES), $(nproc) vCPU, kernel $(uname -r)'" \
		"$SRC/bench/zram-compare/plot.gp" || echo "run.sh: gnuplot failed" >&2
fi
if [ $PERF = 1 ] && [ -f "$OUT/raw/memextd.perf.data" ]; then
	for sort in sym dso; do
		perf report -i "$OUT/raw/memextd.perf.data" --stdio --no-children --sort $sort \
			--percent-limit 0.3 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 \
			>"$OUT/raw/memextd.perf-$sort.txt" || true
	done
fi

cat "$OUT/results.md"
echo
echo "run.sh: table $OUT/results.md, plot $PLOT, raw figures $OUT/raw" >&2
if [ ${#FAILED[@]} -gt 0 ]; then
	printf 'run.sh: FAILED: %s\n' "${FAILED[@]}" >&2
	exit 1
fi
