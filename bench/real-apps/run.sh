#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/real-apps/run.sh: real programs, whose allocators and garbage collectors nobody here
# wrote, with a footprint about twice the budget, in one run under
#   native   no limit;
#   kernel   swap on /dev/zram0 (lz4) and a memory cgroup v1 limited to the budget;
#   memext   a fresh memextd, the program under LD_PRELOAD=libmemext.so, MEMEXT_BUDGET = budget.
# Programs: java (OpenJDK, G1: Big.java), python (CPython: big.py) and node (Node.js, V8:
# big.js), each building a large map, reading it back at random with every value checked, and
# collecting garbage; sort (GNU coreutils, two threads) of a text file the budget's size
# (lines.py) held in memory, the sha256 of its output checked; mariadb (MariaDB's server, many
# threads, a buffer pool of twice the budget: mariadb.sh) scanning a table three ways; cc
# (gcc -O2 of one generated translation unit, gen_c.py, the sha256 of its object checked);
# perl (big.pl: a hash, random lookups, its keys sorted) and awk (gawk, big.awk: an
# associative array, random lookups, a walk), both allocating as fast as they can.
# Prints a markdown table (wall time, peak RSS, swap-ins, kernel / memext); the output line
# of every run must match native's. Leaves no swap, zram, cgroup or daemon behind. Needs
# root; installs a JDK, Node.js, MariaDB and gawk if there are none. Not a test: about 13 minutes
# a repetition on a 2-vCPU VM for the first four.
#
#   bench/real-apps/run.sh [--budget 256M] [--apps "java python node sort cc mariadb perl awk"]
#                          [--reps N] [--build DIR] [--out DIR]
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=/tmp/build-real-apps
BUDGET=256M
APPS="java python node sort"
REPS=1
OUT=
TIMEOUT=1800 # seconds one run may take before it counts as a hang

usage() {
	sed -n '4,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
	--budget) BUDGET=$2; shift 2 ;;
	--apps) APPS=$2; shift 2 ;;
	--reps) REPS=$2; shift 2 ;;
	--build) BUILD=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
done

die() {
	echo "real-apps: $*" >&2
	exit 1
}

BUDGET_BYTES=$(numfmt --from=iec "${BUDGET%B}" 2>/dev/null) || die "bad size: $BUDGET"
[ "$BUDGET_BYTES" -ge $((32 << 20)) ] || die "--budget below 32M"
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || die "bad --reps: $REPS"
SCALE_PCT=$((BUDGET_BYTES * 100 / (256 << 20))) # sizes below are for a budget of 256M
for app in $APPS; do
	case $app in java | python | node | sort | cc | mariadb | perl | awk) ;; *) die "unknown app: $app (java, python, node, sort, cc, mariadb, perl, awk)" ;; esac
done

KSWAP_NAME=real-apps
. "$SRC/bench/zram-compare/kernel-swap.sh"
kswap_check

if [[ " $APPS " == *" java "* ]] && ! command -v javac >/dev/null; then
	echo "real-apps: installing a JDK (default-jdk-headless)" >&2
	apt-get install -y -qq default-jdk-headless >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -qq default-jdk-headless >/dev/null; } ||
		die "no JDK"
fi
if [[ " $APPS " == *" mariadb "* ]] && ! command -v mariadbd >/dev/null; then
	echo "real-apps: installing MariaDB (mariadb-server)" >&2
	apt-get install -y -qq mariadb-server mariadb-client >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -qq mariadb-server mariadb-client >/dev/null; } ||
		die "no MariaDB"
fi
if [[ " $APPS " == *" node "* ]] && ! command -v node >/dev/null; then
	echo "real-apps: installing Node.js (nodejs)" >&2
	apt-get install -y -qq nodejs >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -qq nodejs >/dev/null; } || die "no Node.js"
fi
if [[ " $APPS " == *" awk "* ]] && ! command -v gawk >/dev/null; then
	echo "real-apps: installing gawk" >&2
	apt-get install -y -qq gawk >/dev/null 2>&1 ||
		{ apt-get update -qq && apt-get install -y -qq gawk >/dev/null; } || die "no gawk"
fi

[ -f "$BUILD/build.ninja" ] || meson setup "$BUILD" "$SRC" >/dev/null
ninja -C "$BUILD" daemon/memextd daemon/memextctl preload/libmemext.so >/dev/null
MEMEXTD=$BUILD/daemon/memextd
MEMEXTCTL=$BUILD/daemon/memextctl
SHIM=$BUILD/preload/libmemext.so

OUT=${OUT:-$(mktemp -d /tmp/memext-real-apps.XXXXXX)}
mkdir -p "$OUT/raw"
OUT=$(cd "$OUT" && pwd)
TMPD=$(mktemp -d /tmp/memext-real-apps-run.XXXXXX)

DPID=
cleanup() {
	set +e
	[ -n "$DPID" ] && kill -TERM "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
	kswap_cleanup
	rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'echo "real-apps: interrupted" >&2; exit 130' INT
trap 'echo "real-apps: terminated" >&2; exit 143' TERM

# The command line of an app, sized for the budget.
app_cmd() {
	case $1 in
	java)
		[ -f "$TMPD/java/Big.class" ] || javac -d "$TMPD/java" "$SRC/bench/real-apps/Big.java"
		echo java -Xmx$((BUDGET_BYTES * 16 >> 20))m -cp "$TMPD/java" Big $((30000 * SCALE_PCT))
		;;
	python) echo python3 "$SRC/bench/real-apps/big.py" $((20000 * SCALE_PCT)) ;;
	perl) echo perl "$SRC/bench/real-apps/big.pl" $((15000 * SCALE_PCT)) ;;
	awk) echo gawk -v n=$((12000 * SCALE_PCT)) -f "$SRC/bench/real-apps/big.awk" ;;
	node)
		# node sizes its heap limit from a memory cgroup's (and then runs out of heap
		# under the kernel's limit): a limit far above the budget, as java's -Xmx.
		echo node --expose-gc --max-old-space-size=$((BUDGET_BYTES * 16 >> 20)) \
			"$SRC/bench/real-apps/big.js" $((13000 * SCALE_PCT))
		;;
	sort)
		# The text (the budget's size) and sort's line records, about twice the budget.
		if [ ! -f "$TMPD/sort/input" ]; then
			mkdir -p "$TMPD/sort"
			python3 "$SRC/bench/real-apps/lines.py" "$BUDGET_BYTES" >"$TMPD/sort/input"
			# pipefail: a sort the cgroup kills fails the run, whatever sha256sum saw.
			printf '#!/bin/bash\nset -o pipefail\nLC_ALL=C sort --parallel=2 -S 1G -T "%s" "$1" | sha256sum\n' \
				"$TMPD/sort" >"$TMPD/sort/sort.sh"
			chmod +x "$TMPD/sort/sort.sh"
		fi
		echo "$TMPD/sort/sort.sh" "$TMPD/sort/input"
		;;
	cc)
		# One translation unit whose compilation needs about twice the budget.
		if [ ! -f "$TMPD/cc/gen.c" ]; then
			mkdir -p "$TMPD/cc"
			python3 "$SRC/bench/real-apps/gen_c.py" $((95 * SCALE_PCT)) >"$TMPD/cc/gen.c"
			printf '#!/bin/bash\nset -e\ngcc -O2 -c "$1" -o "$1.o"\nsha256sum <"$1.o"\nrm -f "$1.o"\n' \
				>"$TMPD/cc/cc.sh"
			chmod +x "$TMPD/cc/cc.sh"
		fi
		echo "$TMPD/cc/cc.sh" "$TMPD/cc/gen.c"
		;;
	mariadb)
		# A buffer pool of twice the budget, filled by a table of about that size.
		echo "$SRC/bench/real-apps/mariadb.sh" $((15000 * SCALE_PCT)) $((BUDGET_BYTES * 2 >> 20))
		;;
	esac
}

pswpin() { awk '$1 == "pswpin" {print $2}' /proc/vmstat; }

# Runs one app under one configuration; appends "app config rep wall_s maxrss_kib swapins
# output" to results.tsv.
run_one() {
	local app=$1 config=$2 rep=$3 base=$OUT/raw/$1.$2.r$3 swapins=- before d
	local -a cmd
	read -r -a cmd <<<"$(app_cmd "$app")"
	cmd=(/usr/bin/time -f "time %e %M" -o "$base.time" timeout $TIMEOUT "${cmd[@]}")
	case $config in
	native) ;;
	kernel)
		echo "$BUDGET_BYTES" >"$CG/memory.limit_in_bytes"
		cmd=(bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "${cmd[@]}")
		;;
	memext)
		d=$TMPD/daemon
		rm -rf "$d" && mkdir -p "$d"
		"$MEMEXTD" --socket "$d/memextd.sock" --stats-socket "$d/stats.sock" >"$base.daemon.log" 2>&1 &
		DPID=$!
		for _ in $(seq 100); do [ -S "$d/stats.sock" ] && break; sleep 0.05; done
		[ -S "$d/stats.sock" ] || die "memextd did not come up: $(cat "$base.daemon.log")"
		cmd=(env LD_PRELOAD="$SHIM" MEMEXT_SOCKET="$d/memextd.sock" MEMEXT_BUDGET="$BUDGET_BYTES"
			"${cmd[@]}")
		;;
	esac
	echo "real-apps: $app under $config (repetition $rep)" >&2
	before=$(pswpin)
	# A failure is recorded, not fatal: the kernel's cgroup may OOM-kill a program that
	# memext runs (or the other way round), and the table says so.
	if ! "${cmd[@]}" >"$base.out" 2>"$base.err"; then
		echo "real-apps: $app under $config failed: $(tail -2 "$base.err" | paste -sd' ')" >&2
		echo "FAILED: $(tail -1 "$base.err")" >>"$base.out"
		echo "time failed failed" >"$base.time"
	fi
	case $config in
	kernel) swapins=$(($(pswpin) - before)) ;;
	memext)
		swapins=$("$MEMEXTCTL" --stats-socket "$d/stats.sock" stats --json |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["totals"]["pswpin"])')
		kill -TERM "$DPID" && wait "$DPID" || die "memextd failed: $(tail -3 "$base.daemon.log")"
		DPID=
		;;
	esac
	read -r _ wall maxrss <"$base.time"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$app" "$config" "$rep" "$wall" "$maxrss" "$swapins" \
		"$(tail -1 "$base.out")" >>"$OUT/results.tsv"
}

: >"$OUT/results.tsv"
kswap_setup $((BUDGET_BYTES * 16))
for rep in $(seq "$REPS"); do
	for app in $APPS; do
		# kernel and memext back to back, in turn one first
		if [ $((rep % 2)) = 1 ]; then order="native kernel memext"; else order="native memext kernel"; fi
		for config in $order; do run_one "$app" "$config" "$rep"; done
	done
done

# Every run that finished must have printed native's output line: the programs check each
# value themselves too.
awk -F'\t' '$2 == "native" {want[$1 " " $3] = $7}
	$7 !~ /^FAILED/ && $7 != want[$1 " " $3] {print "real-apps: " $1 " under " $2 " printed \"" $7 "\", native \"" want[$1 " " $3] "\""; bad = 1}
	END {exit bad}' "$OUT/results.tsv" >&2 || die "wrong output"

{
	echo "Budget $(numfmt --to=iec "$BUDGET_BYTES"); $(nproc) CPUs; kernel $(uname -r);" \
		"memext $(git -C "$SRC" describe --always --dirty 2>/dev/null || echo unknown);" \
		"medians of the runs that finished, of $REPS repetition(s). Every run that finished" \
		"printed native's output line."
	echo
	echo "| app | native s | kernel zram s | memext s | kernel / memext | peak RSS MiB native / kernel / memext | swap-ins kernel / memext |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	awk -F'\t' '
	# Over the runs that finished; "failed" when none did.
	function median(key,    n, i, j, t, v) {
		if (vals[key] == "")
			return "failed"
		n = split(vals[key], v, " ")
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
		return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	function num(x, fmt) { return x == "failed" ? "failed" : sprintf(fmt, x) }
	function mib(x) { return x == "failed" ? "-" : sprintf("%d", x / 1024) }
	# A wall time, and how many runs of its configuration failed (OOM-killed, say).
	function wall(a, config,    k) {
		k = a " " config
		return num(median(k " wall"), "%.1f") (nfailed[k] ? " (" nfailed[k] " of " nruns[k] " failed)" : "")
	}
	{ if (!($1 in seen)) { seen[$1] = 1; order[++napps] = $1 }
	  nruns[$1 " " $2]++
	  if ($4 == "failed") { nfailed[$1 " " $2]++; next }
	  vals[$1 " " $2 " wall"] = vals[$1 " " $2 " wall"] " " $4
	  vals[$1 " " $2 " rss"] = vals[$1 " " $2 " rss"] " " $5
	  vals[$1 " " $2 " swp"] = vals[$1 " " $2 " swp"] " " ($6 == "-" ? 0 : $6) }
	END {
		for (i = 1; i <= napps; i++) {
			a = order[i]
			k = median(a " kernel wall"); m = median(a " memext wall")
			printf "| %s | %s | %s | %s | **%s** | %s / %s / %s | %s / %s |\n", a,
				wall(a, "native"), wall(a, "kernel"), wall(a, "memext"),
				k == "failed" || m == "failed" ? "-" : sprintf("%.2fx", k / m),
				mib(median(a " native rss")), mib(median(a " kernel rss")),
				mib(median(a " memext rss")), num(median(a " kernel swp"), "%d"),
				num(median(a " memext swp"), "%d")
		}
	}' "$OUT/results.tsv"
} | tee "$OUT/results.md"
echo "real-apps: table $OUT/results.md, raw figures $OUT/raw" >&2
