#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""python3 workloads under the shim at 4x overcommit (default budget 32 MiB, 128 MiB of data).

    test_python.py sqlite   ...   # wl_sqlite.py: sqlite3 :memory:, per-row hashes, integrity_check
    test_python.py objects  ...   # wl_pyobj.py: large lists/dicts/bytes, checksums recomputed

The workload checks its own data (exit 0 = every row / object matches); this asserts its exit
status and "ok" line, and that memext held it near its budget and evicted the rest. The
workloads run with Debian's /usr/bin/python3 (package python3) when it exists.
"""

import os
import re
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import log, mib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = {"sqlite": "wl_sqlite.py", "objects": "wl_pyobj.py"}
FILL_FACTOR = {"sqlite": 0.6, "objects": 0.75}


def make_body(which):
    def body(ctx):
        py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        # the argument is the data put in; with sqlite's overflow pages and python's object
        # overheads, these factors make the process ~4x its budget (measured natively)
        size = int(4 * ctx.budget * ctx.args.scale * FILL_FACTOR[which])
        ctx.phase(which)
        out = ctx.run_checking(f"python3-{which}",
                               [py, "-u", os.path.join(HERE, WORKLOADS[which]), str(size)],
                               f"the {which} workload", "it checks its own data", r"^ok in ")
        m = re.search(r"^footprint (\d+)", out, re.M)
        footprint = int(m.group(1)) if m else size
        log(f"footprint {mib(footprint)}")
        ctx.check_memext(footprint=footprint)
    return body


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    if which not in WORKLOADS:
        print(f"usage: {sys.argv[0]} {{{'|'.join(WORKLOADS)}}} --memextd ... ", file=sys.stderr)
        sys.exit(2)
    pkgs = ["python3"] + (["sqlite3"] if which == "sqlite" else [])
    sys.exit(e2elib.run(f"python3-{which}", make_body(which), packages=pkgs,
                        binaries=["python3"], budget="32M", argv=sys.argv[2:]))
