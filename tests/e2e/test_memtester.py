#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""memtester under the shim with MEMEXT_IGNORE_MLOCK=1 at 4x (default budget 12 MiB, 48 MiB).

memtester mlock()s its buffer; mlocked memory is never evicted unless the program opts in
with MEMEXT_IGNORE_MLOCK=1 (issue 7). Runs one loop of the stuck-address test (16 write and
16 read passes) and the eight tests of MEMTESTER_TEST_MASK=0xff (random value, compare xor, sub, mul, div,
or, and, sequential increment); asserts exit 0, no FAILURE line, every test "ok", and that memext
held memtester near its budget and evicted the rest of its buffer.
"""

import os
import re
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import log, mib  # noqa: E402

MASK = "0xff"     # tests 0-7 (the stuck address test always runs)
TESTS = ["Stuck Address", "Random Value", "Compare XOR", "Compare SUB", "Compare MUL",
         "Compare DIV", "Compare OR", "Compare AND", "Sequential Increment"]


def body(ctx):
    size = int(4 * ctx.budget * ctx.args.scale)
    env = ctx.shim_env({"MEMEXT_IGNORE_MLOCK": "1", "MEMTESTER_TEST_MASK": MASK})
    ctx.phase("memtester")
    app = ctx.spawn("memtester", ["memtester", f"{size >> 20}M", "1"], env=env)
    rc = app.wait(300, "memtester")
    out = app.text().replace("\b", "")
    for ln in out.splitlines():
        if re.search(r"memext:|got |mlock|Loop|Done|FAIL|ok$", ln):
            log("  | " + re.sub(r"(setting +\d+testing +\d+)+", "...", ln)[:200])
    if rc != 0:
        ctx.fail(f"memtester exited {rc} (bits: 1 allocation, 2 stuck address, 4 other "
                 f"test):\n{app.output(15)}")
    if "FAILURE" in out:
        ctx.fail("memtester reported: " + "; ".join(ln.strip() for ln in out.splitlines()
                                                     if "FAILURE" in ln)[:2000])
    for t in TESTS:
        if not re.search(re.escape(t) + r"\s*:.*\bok\s*$", out, re.M):
            ctx.fail(f"memtester: no 'ok' for the {t} test")
    if "Done." not in out:
        ctx.fail("memtester did not print 'Done.'")
    log(f"memtester buffer {mib(size)}")
    ctx.check_memext(footprint=size)


if __name__ == "__main__":
    sys.exit(e2elib.run("memtester", body, packages=["memtester"], binaries=["memtester"],
                        budget="12M"))
