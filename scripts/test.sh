#!/bin/bash
# Builds memext and runs its whole test suite; ends with "N passed, N failed, N skipped".
# Exit status: 0 only when something ran and nothing failed.
#   scripts/test.sh            # everything
#   scripts/test.sh --suite unit
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test

build=${MEMEXT_BUILD_DIR:-build}
if [[ -f "$build/build.ninja" ]]; then
	meson setup --reconfigure "$build" >/dev/null
else
	meson setup "$build" -Dwerror=true >/dev/null
fi
ninja -C "$build"

status=0
meson test -C "$build" --print-errorlogs --num-processes 1 "$@" || status=$?

summary=0
python3 - "$build/meson-logs/testlog.json" <<'PY' || summary=$?
import json, sys
passed = failed = skipped = 0
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if not line:
            continue
        r = json.loads(line).get("result", "")
        if r in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif r == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or passed == 0 else 0)
PY
if ((status != 0 || summary != 0)); then
	exit 1
fi
