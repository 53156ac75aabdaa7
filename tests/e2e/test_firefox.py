#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Firefox ESR, headless, takes a screenshot of a page under the shim, its main process over
its budget.

Firefox starts its sandboxed processes (the socket process, the fork server, and from that the
content processes, which run without exec) with glibc's clone() and namespace flags, not
fork(), after running the atfork handlers itself from a list of its own (mozglue defines
__register_atfork()). The kernel registers none of a clone() child's memory with a
userfaultfd: it read zeroes where the parent had evicted pages, and the shim, reaching the
handlers twice, deadlocked in the first clone(). Now every evicted page comes back before such
a copy and the child runs unmanaged until it executes a program; content processes install
their seccomp filter anyway.

The page (the same as test_chromium.py's: ~1.5 M JavaScript objects read back scattered, a
checksum written into the page) is rendered to a PNG, which must equal a native run's byte
for byte; the main process must be held near a 16 MiB budget, pages evicted and brought back,
and no seccomp sandbox violation reported (a call of the shim's in a sandboxed process).
Each of the main process's clone()s brings all its pages back for a moment, so a few samples
of its RSS may be over the bound.
"""

import os
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import log, mib  # noqa: E402
from test_chromium import OBJECTS, PAGE, ROUNDS  # noqa: E402


def firefox_cmd(ctx, name, page):
    png = os.path.join(ctx.tmp, f"{name}.png")
    profile = os.path.join(ctx.tmp, f"{name}-profile")
    os.makedirs(profile, exist_ok=True)
    cmd = ["firefox-esr", "--headless", "--no-remote", "--profile", profile,
           "--window-size", "800,200", "--screenshot", png, "file://" + page]
    return cmd, png


def native_run(ctx, page):
    """Firefox without the shim: its PNG and the main process's peak RssAnon."""
    cmd, png = firefox_cmd(ctx, "native", page)
    peak = e2elib.run_native(cmd, ctx.tmp, "firefox")
    with open(png, "rb") as f:
        return f.read(), peak


def body(ctx):
    page = os.path.join(ctx.tmp, "page.html")
    with open(page, "w") as f:
        f.write(PAGE % {"n": OBJECTS, "rounds": ROUNDS})
    native_png, footprint = native_run(ctx, page)
    log(f"native: a {len(native_png)}-byte screenshot, main process peak RssAnon "
        f"{mib(footprint)}")

    ctx.phase("render")
    cmd, png = firefox_cmd(ctx, "memext", page)
    app = ctx.spawn("firefox", cmd)
    rc = app.wait(300, "firefox")
    if rc != 0:
        ctx.fail(f"firefox under memext {app.status()}:\n{app.output(20)}")
    got = open(png, "rb").read() if os.path.exists(png) else b""
    if got != native_png:
        ctx.fail(f"the screenshot under memext ({len(got)} bytes) differs from native's")
    else:
        log(f"screenshot under memext equals native's ({len(got)} bytes)")
    out = app.text()
    violations = [ln for ln in out.splitlines() if "sandbox violation" in ln]
    if violations:
        ctx.fail("a sandboxed process reported a seccomp violation:\n" +
                 "\n".join(violations[:5]))
    drained = ctx.totals()["forks_drained"] - ctx.base["totals"]["forks_drained"]
    log(f"{drained} clone()s brought every page back first")
    if drained < 1:
        ctx.fail("no clone() brought the pages back first: Firefox's launch was not seen")
    # Each clone() brings every page of its caller back for a moment (the main process's at
    # start-up: the socket process, the fork server): up to two 20 ms samples each may be over
    # the bound.
    ctx.check_memext(footprint=footprint, allowed_over=2 * drained)
    ctx.check_process_evicted(app.pid, footprint, "the main process")


if __name__ == "__main__":
    sys.exit(e2elib.run("firefox", body, packages=["firefox-esr", "fonts-liberation"],
                        binaries=["firefox-esr"], budget="16M"))
