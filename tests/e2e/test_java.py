#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A JVM (OpenJDK, its default G1 collector) under the shim, its heap about 3x the budget.

bench/real-apps/Big.java builds a HashMap, reads it back three times at random with every
value checked, and makes a full collection (which moves every live object) after each pass;
it prints one line that must be the same in every run. G1 commits and uncommits its regions
with mmap(MAP_FIXED) over one reservation, from several threads, while memext evicts them:
under Linux 6.18's UFFDIO_MOVE answer that counts no moved page (docs/ARCHITECTURE.md,
"The agent believes staging"), a run in nine lost heap pages here (NullPointerException or
a crash in the collector). This asserts the line, and that memext held the JVM near its
budget and evicted the rest.
"""

import os
import re
import subprocess
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import log, mib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "bench", "real-apps", "Big.java")
ENTRIES_PER_MIB = 11719   # Big.java's entries for 1 MiB of budget (3 M at 256 MiB: ~2.5x)


def expected_line(n):
    """What Big.java prints: the map's size and the summed lengths of 3 n looked-up values,
    recomputed from the same java.util.Random(1) sequence."""
    seed = (1 ^ 0x5DEECE66D) & ((1 << 48) - 1)

    def next_int(bound):
        nonlocal seed
        if bound & -bound == bound:     # a power of two
            seed = (seed * 0x5DEECE66D + 0xB) & ((1 << 48) - 1)
            return (bound * (seed >> 17)) >> 31
        while True:
            seed = (seed * 0x5DEECE66D + 0xB) & ((1 << 48) - 1)
            bits = seed >> 17
            val = bits % bound
            if bits - val + (bound - 1) < (1 << 31):
                return val

    total = 0
    for _ in range(3 * n):
        key = next_int(n)
        total += len(f"value-{key}-{key * 7919 % 100003}")
    return f"ok {n} {total}"


def body(ctx):
    n = int(ENTRIES_PER_MIB * ctx.budget // (1 << 20) * ctx.args.scale)
    classes = os.path.join(ctx.tmp, "classes")
    r = subprocess.run(["javac", "-d", classes, SOURCE], env=e2elib.native_env(),
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        ctx.fail(f"javac exited {r.returncode}: {r.stderr.strip()[-1000:]}")
        return
    want = expected_line(n)
    ctx.phase("java")
    # A heap limit far above the budget: G1 sizes itself by its own rules, as in production.
    ctx.run_checking("java", ["java", f"-Xmx{16 * ctx.budget >> 20}m", "-cp", classes, "Big",
                              str(n)],
                     "the JVM", "Big.java checks every value it reads back",
                     rf"^{re.escape(want)}$", timeout=600)
    # The heap at its peak, natively: about 2.5x the budget (bench/real-apps, 656 MiB for
    # 3 M entries); counted as 2x so that the eviction floor is safely below what it evicts.
    footprint = 2 * ctx.budget
    log(f"{n} entries; footprint counted as {mib(footprint)}")
    ctx.check_memext(footprint=footprint)


if __name__ == "__main__":
    sys.exit(e2elib.run("java", body, packages=["default-jdk-headless"],
                        binaries=["java", "javac"], budget="128M", argv=sys.argv[1:]))
