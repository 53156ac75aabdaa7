#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""GNU sort under the shim, its whole input in memory at ~4x the budget (default 16 MiB).

coreutils' sort reads a file into one buffer sized from the file (-S 1G is only a ceiling),
builds an array of line records beside it and merge-sorts that with two threads
(--parallel=2), comparing lines at random all over the text. Two sorts of the same input, in
memory (no temporary files: the buffer holds it all): whole lines in byte order, and a
stable numeric sort on the last field. Each output is compared byte for byte with Python's
sorted() of the same lines; memext must have held sort near its budget and evicted the rest
of its footprint (measured by a native run first).

A kernel memory cgroup v1 at 256 MiB OOM-killed this sort of a 210 MB file in 2 of 3 runs
here, with zram swap free; memext ran it to the right answer every time (PERFORMANCE.md).
"""

import hashlib
import os
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench", "real-apps"))
import e2elib  # noqa: E402
from e2elib import log, mib  # noqa: E402
from lines import make_lines  # noqa: E402

SORTS = {
    # name: (sort's arguments, Python's key)
    "lines": ([], None),
    "numeric": (["-s", "-t", " ", "-k9,9n"], lambda ln: int(ln.split(b" ")[8])),
}


def make_input(path, size):
    """Writes about size bytes of lines (bench/real-apps/lines.py) to path; returns them."""
    lines = make_lines(size)
    with open(path, "wb") as f:
        f.writelines(lines)
    return lines


def sort_cmd(path, out, extra):
    return ["sort", "--parallel=2", "-S", "1G", "-T", os.path.dirname(out), "-o", out] + \
        extra + [path]


def native_peak_rss(cmd):
    """Runs cmd without the shim; returns its peak RSS in bytes."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execvpe(cmd[0], cmd, dict(e2elib.native_env(), LC_ALL="C"))
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise e2elib.TestFailure(f"native {' '.join(cmd)}: status {status:#x}")
    return usage.ru_maxrss * 1024


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def body(ctx):
    size = int(2 * ctx.budget * ctx.args.scale)
    path = os.path.join(ctx.tmp, "input.txt")
    lines = make_input(path, size)
    log(f"input: {len(lines)} lines, {mib(os.path.getsize(path))}")
    footprint = 0
    for name, (extra, key) in SORTS.items():
        want = hashlib.sha256(b"".join(sorted(lines, key=key))).hexdigest()
        native_out = os.path.join(ctx.tmp, f"{name}.native")
        peak = native_peak_rss(sort_cmd(path, native_out, extra))
        if digest(native_out) != want:
            ctx.fail(f"sort {name}: native sort and Python disagree (the test's fault)")
        os.unlink(native_out)
        footprint = max(footprint, peak)
        log(f"sort {name}: native peak RSS {mib(peak)}")

        ctx.phase(f"sort {name}")
        out = os.path.join(ctx.tmp, f"{name}.sorted")
        app = ctx.spawn(f"sort-{name}", sort_cmd(path, out, extra),
                        env=ctx.shim_env({"LC_ALL": "C"}))
        rc = app.wait(300, f"sort {name}")
        if rc != 0:
            ctx.fail(f"sort {name} {app.status()}:\n{app.output(10)}")
        elif digest(out) != want:
            ctx.fail(f"sort {name} under memext: its output differs from sorted()")
        else:
            log(f"sort {name}: {len(lines)} lines, output right")
        os.unlink(out)
    del lines
    ctx.check_memext(footprint=footprint, clients=len(SORTS))


if __name__ == "__main__":
    sys.exit(e2elib.run("sort", body, packages=["coreutils"], binaries=["sort"],
                        budget="16M"))
