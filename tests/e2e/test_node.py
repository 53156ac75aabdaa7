#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Node.js (V8) under the shim, its heap about 2x the budget.

bench/real-apps/big.js builds a Map of objects, reads it back three times at random with every
value checked, and runs a full collection (global.gc()) after each pass; it prints one line
that must be the same in every run. V8 reserves its heap in large PROT_NONE ranges and commits
pages into them with mprotect and mmap(MAP_FIXED), moves objects with a parallel scavenger
and compactor on helper threads, frees pages with madvise, and maps its JIT code anonymous:
all of it under memext's eviction. This asserts the line, and that memext held node near its
budget and evicted the rest.
"""

import os
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import log, mib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "..", "bench", "real-apps", "big.js")
ENTRIES_PER_MIB = 5078    # big.js's entries for 1 MiB of budget (1.3 M at 256 MiB: ~2x)


def expected_line(n):
    """What big.js prints: the map's size and the summed lengths of 3 n looked-up values'
    strings, recomputed from the same 31-bit LCG."""
    seed, total = 1, 0
    for _ in range(3 * n):
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        key = seed % n
        total += len(f"value-{key}-{key * 7919 % 100003}")
    return f"ok {n} {total}"


def body(ctx):
    n = int(ENTRIES_PER_MIB * ctx.budget // (1 << 20) * ctx.args.scale)
    want = expected_line(n)
    ctx.phase("node")
    ctx.run_checking("node", ["node", "--expose-gc", SOURCE, str(n)], "node",
                     "big.js checks every value it reads back", rf"^{want}$", timeout=600)
    # The heap at its peak, natively: about 2x the budget (bench/real-apps: ~520 MiB of RSS
    # for 1.3 M entries, the binary's own ~45 MiB included), and so counted: at least
    # (2x budget - RSS bound) must be evicted (measured: 2.08 M pages, 8 GiB, at 64 MiB).
    footprint = 2 * ctx.budget
    log(f"{n} entries; footprint counted as {mib(footprint)}")
    ctx.check_memext(footprint=footprint)


if __name__ == "__main__":
    sys.exit(e2elib.run("node", body, packages=["nodejs"], binaries=["node"], budget="64M",
                        argv=sys.argv[1:]))
