#!/bin/bash
# The main job, from a fresh clone: build memext, start memextd with the default settings on
# sockets in a temp dir, run a demo program at 4x its budget, and show the statistics.
#   scripts/demo.sh [BUDGET]      (default 64M; the demo uses 4x that)
set -euo pipefail
cd "$(dirname "$0")/.."

budget=${1:-64M}
scripts/deps.sh
build=${MEMEXT_BUILD_DIR:-build}
[[ -f "$build/build.ninja" ]] || meson setup "$build" >/dev/null
ninja -C "$build" >/dev/null

dir=$(mktemp -d /tmp/memext-demo.XXXXXX)
cleanup() {
	[[ -n "${daemon:-}" ]] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

"$build/daemon/memextd" --socket "$dir/memextd.sock" --stats-socket "$dir/stats.sock" \
	2>"$dir/memextd.log" &
daemon=$!
for _ in $(seq 100); do [[ -S "$dir/stats.sock" ]] && break; sleep 0.05; done

size=$(python3 -c "import re,sys; m=re.fullmatch(r'(\d+)([KMGT]?)', sys.argv[1]); \
print(str(int(m.group(1))*4)+m.group(2))" "$budget")
echo "== running memext-demo $size with MEMEXT_BUDGET=$budget"
LD_PRELOAD="$PWD/$build/preload/libmemext.so" MEMEXT_SOCKET="$dir/memextd.sock" \
	MEMEXT_BUDGET="$budget" MEMEXT_DEBUG=1 "$build/bench/memext-demo" "$size" &
app=$!
sleep 2
echo "== memextctl stats (while the demo runs)"
"$build/daemon/memextctl" --stats-socket "$dir/stats.sock" stats || true
grep -E 'VmHWM|VmRSS|RssAnon' "/proc/$app/status" 2>/dev/null || true
wait "$app"
# The daemon lets go of a client when its pidfd says so: give it a moment to.
for _ in $(seq 50); do
	"$build/daemon/memextctl" --stats-socket "$dir/stats.sock" stats --json 2>/dev/null |
		grep -q "\"pid\":$app[,}]" || break
	sleep 0.1
done
echo "== memextctl stats (after the demo exited)"
"$build/daemon/memextctl" --stats-socket "$dir/stats.sock" stats
echo "== memextd log"
cat "$dir/memextd.log"
