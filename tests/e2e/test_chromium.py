#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Chromium, headless, renders a page under the shim with its browser process over its budget.

A browser is a program nobody here wrote that does everything at once: dozens of threads,
fork and exec of helpers (crashpad, a zygote and its renderers), namespaces, seccomp, closing
every fd it finds in /proc/self/fd. Under the shim it used to end with "GPU process isn't
usable": its zygote traps when it finds more than one thread, and the shim's agent and
watchdog were two more. The shim now stays out of the zygote (and so of the renderers it
forks); the browser process is managed.

The page builds ~1.5 M JavaScript objects, reads them back in a scattered order, checking
each, and writes a checksum into the DOM; chromium --dump-dom prints it. The checksum is
computed here too, in Python, and the whole dump must equal a native run's. The browser
process (~100 MiB of anonymous memory natively) must be held near a 16 MiB budget, its pages
evicted and brought back. As root Chromium runs only with --no-sandbox; its renderers then
run unconfined but are still children of the zygote, so unmanaged.
"""

import os
import sys

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import log, mib  # noqa: E402

OBJECTS = 1500000
ROUNDS = 3

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const N = %(n)d;
const a = new Array(N);
let x = 12345;
for (let i = 0; i < N; i++) {
  x = (Math.imul(x, 1103515245) + 12345) >>> 0;
  a[i] = {k: i, v: x, s: "s" + (x %% 100000)};
}
let h = 0;
for (let r = 0; r < %(rounds)d; r++)
  for (let i = 0; i < N; i++) {
    const j = (i * 7919 + r) %% N, o = a[j];
    if (o.k !== j) throw new Error("object " + j + " holds " + o.k);
    h = (Math.imul(h, 31) + o.v + o.s.length) >>> 0;
  }
document.getElementById("out").textContent = "sum " + h;
</script></body></html>
"""


def expected_sum():
    """The page's checksum, computed the same way."""
    m = 0xFFFFFFFF
    v = [0] * OBJECTS
    x = 12345
    for i in range(OBJECTS):
        x = (x * 1103515245 + 12345) & m
        v[i] = x
    h = 0
    for r in range(ROUNDS):
        for i in range(OBJECTS):
            o = v[(i * 7919 + r) % OBJECTS]
            h = (h * 31 + o + len("s%d" % (o % 100000))) & m
    return h


def chromium_cmd(ctx, name, page):
    """chromium --dump-dom of page, its stdout to a file of the temp dir (the exec keeps the
    pid: Debian's /usr/bin/chromium is a script that executes the browser)."""
    dom = os.path.join(ctx.tmp, f"{name}.dom")
    profile = os.path.join(ctx.tmp, f"{name}-profile")
    cmd = ["sh", "-c", 'out="$1"; shift; exec "$@" > "$out"', "sh", dom, "chromium",
           "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={profile}", "--dump-dom", "file://" + page]
    return cmd, dom


def native_run(ctx, page):
    """Chromium without the shim: its dump and the browser process's peak RssAnon."""
    cmd, dom = chromium_cmd(ctx, "native", page)
    peak = e2elib.run_native(cmd, ctx.tmp, "chromium")
    with open(dom) as f:
        return f.read(), peak


def body(ctx):
    page = os.path.join(ctx.tmp, "page.html")
    with open(page, "w") as f:
        f.write(PAGE % {"n": OBJECTS, "rounds": ROUNDS})
    want = f"sum {expected_sum()}"
    native_dom, footprint = native_run(ctx, page)
    if want not in native_dom:
        ctx.fail(f"native chromium's dump lacks '{want}' (the test's fault): "
                 f"{native_dom[:300]!r}")
    log(f"native: '{want}', browser process peak RssAnon {mib(footprint)}")

    ctx.phase("render")
    cmd, dom = chromium_cmd(ctx, "memext", page)
    app = ctx.spawn("chromium", cmd)
    rc = app.wait(300, "chromium")
    if rc != 0:
        ctx.fail(f"chromium under memext {app.status()}:\n{app.output(20)}")
    with open(dom) as f:
        got = f.read()
    if got != native_dom:
        ctx.fail(f"the dump under memext differs from native's: {got[:300]!r}")
    else:
        log(f"dump under memext equals native's ({len(got)} bytes, '{want}')")
    out = app.text()
    if "stays out" not in out or "zygote" not in out:
        ctx.fail("the shim did not say it stayed out of the zygote")
    if "close_multiple" in out:
        # Crashpad closes what it lists in /proc/self/fd and warns when a close fails.
        ctx.fail("crashpad could not close a descriptor of the shim's it listed")
    ctx.check_memext(footprint=footprint)
    ctx.check_process_evicted(app.pid, footprint, "the browser process")


if __name__ == "__main__":
    sys.exit(e2elib.run("chromium", body, packages=["chromium", "fonts-liberation"],
                        binaries=["chromium"], budget="16M"))
