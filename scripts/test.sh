#!/bin/bash
# Builds memext and runs its whole test suite; ends with the line "N passed, N failed".
# Exit status: 0 only when something ran and nothing failed.
#   scripts/test.sh                  # everything, then the daemon again under ASan+UBSan
#   scripts/test.sh --suite unit     # arguments go to meson test (the sanitizer pass is skipped)
# MEMEXT_BUILD_DIR (default build) and MEMEXT_SKIP_SANITIZERS=1 change what it does.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh --test

build=${MEMEXT_BUILD_DIR:-build}
asan_build="$build-sanitize"

setup() { # dir, meson options...
	local dir=$1
	shift
	if [[ -f "$dir/build.ninja" ]]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir"
}

status=0
logs=()
setup "$build" -Dwerror=true
meson test -C "$build" --print-errorlogs --num-processes 1 "$@" || status=$?
logs+=("$build/meson-logs/testlog.json")

# The daemon under AddressSanitizer (with leak checks) and UndefinedBehaviorSanitizer,
# against the same unit and integration tests. The shim and the test programs stay plain:
# a sanitized library cannot be preloaded into an ordinary program.
if [[ $# -eq 0 && -z "${MEMEXT_SKIP_SANITIZERS:-}" ]]; then
	setup "$asan_build" -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C "$asan_build" --print-errorlogs --num-processes 1 \
		--suite unit --suite integration || status=$?
	logs+=("$asan_build/meson-logs/testlog.json")
fi

summary=0
python3 - "${logs[@]}" <<'PY' || summary=$?
import json, sys
passed = failed = skipped = 0
for path in sys.argv[1:]:
    with open(path) as f:
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
if skipped:
    print(f"({skipped} skipped)")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or passed == 0 else 0)
PY
if ((status != 0 || summary != 0)); then
	exit 1
fi
