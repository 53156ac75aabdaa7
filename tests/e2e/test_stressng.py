#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""stress-ng --vm --verify under the shim, each vm worker at 4x its budget (default 32 MiB).

stress-ng divides --vm-bytes among the --vm instances; every stress-ng process inherits
MEMEXT_BUDGET and becomes a client of its own (the workers are fork children), so each vm
worker gets vm-bytes / instances = 4x the budget. Runs first --vm-method all (every method in
turn, until the time limit), then a few chosen methods one by one, each with --verify and a
time limit (stress-ng's default: every bogo op maps a fresh buffer, fills and checks it,
unmaps it; the time limits only decide how many ops run); asserts exit status 0, a "successful run" line, no "fail"/"error"/
verification messages, bogo ops done, and (per process) that memext held every worker near
its budget and evicted the rest.

With --userfaultfd, runs stress-ng's userfaultfd stressor instead: its worker maps 4x the
budget, registers it with a userfaultfd of its own and serves its own faults, which the kernel
refuses (EBUSY) while memext's holds the memory. The shim has memextd hand the range over; the
test asserts a successful, verified run with bogo ops and that the worker's range was handed
over (totals.hand_backs). That memory is the program's from then on: no RSS bound there.
One worker: each is two tasks that fault and answer in the kernel without a break, and on this
2-CPU machine (PREEMPT_NONE) two workers starve every other task, memextd included, whose
answers their own faults on other memory wait for: 8 s runs took 25-150 s (natively, other
tasks starve for up to 5 s).
"""

import os
import re
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import TestFailure, log, mib  # noqa: E402

INSTANCES = 2
# methods run alone after "all": sequential, random, bit-level, move/swap patterns
METHODS = ["rand-set", "walk-1d", "swap", "move-inv"]


def run_stressng(ctx, name, args, timeout, stressor="vm", bounded=True):
    cmd = ["stress-ng", "--temp-path", ctx.tmp, "--metrics-brief", "--verify"] + args
    if stressor == "vm":
        cmd += ["--vm", str(INSTANCES), "--vm-bytes", str(4 * ctx.budget * INSTANCES)]
    app = ctx.spawn(name, cmd, bounded=bounded)
    rc = app.wait(timeout, " ".join(cmd))
    out = app.text()
    ops = [int(m.group(1)) for m in re.finditer(rf"metrc:.*\b{stressor}\s+(\d+)\s", out)]
    bad = [ln for ln in out.splitlines()
           if re.search(r"\bfail\b|error|verif|corrupt|mismatch|detected|memory:", ln, re.I)
           and "info:" not in ln]
    log(f"{name}: exit {rc}, bogo ops {ops}")
    if rc != 0:
        ctx.fail(f"'{' '.join(cmd)}' exited {rc}:\n{app.output(30)}")
    if "successful run completed" not in out:
        ctx.fail(f"{name}: no 'successful run completed' line:\n{app.output(30)}")
    if bad:
        ctx.fail(f"{name}: stress-ng reported failures:\n" + "\n".join(bad[:20]))
    if not ops:
        ctx.fail(f"{name}: no {stressor} metrics line:\n{app.output(30)}")
    elif ops[0] <= 0:
        # a slow method may not finish one bogo op within its time limit; the time limit is
        # not a pass/fail criterion, so this is only reported
        log(f"{name}: note: 0 bogo ops completed within the time limit")
    ctx.daemon.check_alive()
    return app


def body(ctx):
    ctx.bound_children = True     # the vm workers are fork children: each one is bounded
    per = 4 * ctx.budget
    log(f"{INSTANCES} vm workers x {mib(per)} each")
    ctx.phase("vm-all")
    run_stressng(ctx, "stress-ng-all", ["--vm-method", "all", "--timeout",
                                        f"{max(5, int(16 * ctx.args.scale))}s"], 240)
    for m in METHODS:
        ctx.phase(f"vm-{m}")
        run_stressng(ctx, f"stress-ng-{m}", ["--vm-method", m, "--timeout",
                                             f"{max(2, int(6 * ctx.args.scale))}s"], 240)
    ctx.check_memext(footprint=per, clients=INSTANCES * (1 + len(METHODS)),
                     min_pswpin_frac=0.5)


def body_userfaultfd(ctx):
    ctx.phase("userfaultfd", bounded=False)
    before = ctx.totals()["hand_backs"]
    run_stressng(ctx, "stress-ng-userfaultfd",
                 ["--userfaultfd", "1", "--userfaultfd-bytes", str(4 * ctx.budget),
                  "--timeout", f"{max(3, int(8 * ctx.args.scale))}s"], 240,
                 stressor="userfaultfd", bounded=False)
    handed = ctx.totals()["hand_backs"] - before
    log(f"ranges handed to stress-ng's own userfaultfd: {handed}")
    if handed < 1:
        ctx.fail("totals.hand_backs did not grow: the worker's registration did not go "
                 "through memextd")


def add_args(ap):
    ap.add_argument("--userfaultfd", action="store_true",
                    help="run the userfaultfd stressor instead of the vm ones")


def main():
    def pick(ctx):
        (body_userfaultfd if ctx.args.userfaultfd else body)(ctx)

    return e2elib.run("stress-ng", pick, packages=["stress-ng"], binaries=["stress-ng"],
                      budget="32M", add_args=add_args)


if __name__ == "__main__":
    sys.exit(main())
