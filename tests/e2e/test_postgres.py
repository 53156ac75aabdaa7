#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""PostgreSQL under the shim: a server that forks a backend per connection, run by its own
unprivileged user, with in-memory sorts and hashes far larger than the budget.

The postmaster runs as the user postgres with CAP_SYS_PTRACE in its ambient set, which lets the
shim make a userfaultfd without /dev/userfaultfd (vm.unprivileged_userfaultfd=0); the package
would give that user group memext instead, which a test must not do to the machine. Every
backend is a fork child of the postmaster and a client of memextd with the same budget.
work_mem is 1 GB, so the sorts and hash aggregates below stay in memory (no temp files) and
each backend holds about 2-3x the budget. Two sessions run side by side:
  - a sort of 2 M rows by a scattered key (string_agg ... ORDER BY), and a hash aggregate of
    4 M rows into 800 000 groups;
  - a table of 500 000 md5 strings, a B-tree index on them, an index-only count, and the
    strings read back in index order.
Every answer (counts, sums, md5 of the whole ordered output) is recomputed in Python and must
match. Then the server shuts down cleanly (SIGINT) and exits 0.
"""

import glob
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import Skip, descendants, log, native_env, wait_for  # noqa: E402

SORT_ROWS = 2_000_000
AGG_ROWS, AGG_GROUPS = 4_000_000, 800_000
TABLE_ROWS = 500_000


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def scaled(n, ctx):
    return max(1000, int(n * ctx.budget / (64 << 20) * ctx.args.scale))


def queries(ctx):
    """(sql, the answer psql -At prints) pairs for each of the two sessions."""
    n, a, g, t = (scaled(SORT_ROWS, ctx), scaled(AGG_ROWS, ctx), scaled(AGG_GROUPS, ctx),
                  scaled(TABLE_ROWS, ctx))
    order = sorted(range(1, n + 1), key=lambda x: (x * 7919 % 1000003, x))
    # x % g for x in 1..a: k gets a // g values, plus one more when 1 <= k <= a % g (k = 0
    # counts the multiples of g, a // g of them).
    counts = [a // g + (1 if 1 <= k <= a % g else 0) for k in range(g)]
    hashes = sorted(md5(str(x)) for x in range(1, t + 1))
    first = [
        (f"SELECT count(*), sum(x), md5(string_agg(x::text, ',' ORDER BY x::bigint * 7919 % "
         f"1000003, x)) FROM generate_series(1, {n}) x;",
         f"{n}|{n * (n + 1) // 2}|{md5(','.join(map(str, order)))}"),
        (f"SELECT count(*), sum(c), md5(string_agg(k::text || ':' || c, ',' ORDER BY k)) FROM "
         f"(SELECT x % {g} AS k, count(*) AS c FROM generate_series(1, {a}) x GROUP BY 1) s;",
         f"{g}|{a}|{md5(','.join(f'{k}:{c}' for k, c in enumerate(counts)))}"),
    ]
    second = [
        (f"CREATE TABLE t AS SELECT x, md5(x::text) AS h FROM generate_series(1, {t}) x;",
         f"SELECT {t}"),
        ("CREATE INDEX t_h ON t (h);", "CREATE INDEX"),
        ("VACUUM t;", "VACUUM"),
        ("SET enable_seqscan = off;", "SET"),
        ("SELECT count(*) FROM t WHERE h >= '8';", str(sum(h >= "8" for h in hashes))),
        ("SELECT md5(string_agg(h, '' ORDER BY h)) FROM t;", md5("".join(hashes))),
    ]
    return first, second


def postgres_bin():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise Skip("no /usr/lib/postgresql/*/bin/postgres")
    return os.path.dirname(found[-1])


def as_postgres(cmd, caps=False):
    pre = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    if caps:
        pre += ["--inh-caps=+sys_ptrace", "--ambient-caps=+sys_ptrace"]
    return pre + cmd


def psql(ctx, sock_dir, name, session):
    """Runs one session's statements in one psql (one backend), natively."""
    sql = "\n".join(["SET work_mem = '1GB';", "SET max_parallel_workers_per_gather = 0;"] +
                    [q for q, _ in session])
    path = os.path.join(ctx.tmp, f"{name}.sql")
    with open(path, "w") as f:
        f.write(sql + "\n")
    os.chmod(path, 0o644)
    return ctx.spawn(name, as_postgres(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-At", "-h",
                                        sock_dir, "-d", "postgres", "-f", path]),
                     env=native_env(), managed=False)


def body(ctx):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise Skip("needs root and setpriv to run the server as the user postgres")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Skip("no user postgres")
    bindir = postgres_bin()
    first, second = queries(ctx)

    # The temp dir is the daemon's: the server's user must reach its socket, and the shim.
    os.chmod(ctx.tmp, 0o755)
    os.chmod(ctx.daemon.sock, 0o666)
    shim = os.path.join(ctx.tmp, os.path.basename(ctx.args.shim))
    shutil.copy(ctx.args.shim, shim)
    os.chmod(shim, 0o755)
    pg = os.path.join(ctx.tmp, "pg")
    os.mkdir(pg)
    shutil.chown(pg, "postgres", "postgres")
    data = os.path.join(pg, "data")
    r = subprocess.run(as_postgres([os.path.join(bindir, "initdb"), "-D", data, "-A", "trust",
                                    "--no-sync", "--no-locale", "-E", "UTF8"]),
                       env=native_env(), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        ctx.fail(f"initdb exited {r.returncode}: {r.stderr.strip()[-1000:]}")
        return

    ctx.bound_children = True   # every backend is a fork child: each one is bounded
    ctx.phase("postgres")
    shim_vars = ctx.shim_env({"LD_PRELOAD": shim})
    server = ctx.spawn("postgres", as_postgres(
        ["env"] + [f"{k}={shim_vars[k]}" for k in ("LD_PRELOAD", "MEMEXT_SOCKET",
                                                  "MEMEXT_BUDGET", "MEMEXT_DEBUG")] +
        [os.path.join(bindir, "postgres"), "-D", data, "-k", pg, "-c", "listen_addresses=",
         "-c", "shared_buffers=16MB", "-c", "fsync=off", "-c", "max_connections=10"],
        caps=True), env=native_env())
    try:
        serve(ctx, bindir, pg, server, first, second)
    finally:
        stop_server(server)
    # The sort-and-hash backend held up to ~350 MiB evicted beside its budget here: counted as
    # 3x the budget, so that at least 1.25x the budget must have been evicted.
    ctx.check_memext(footprint=3 * ctx.budget, min_pswpin_frac=0.25)


def ready(bindir, pg):
    """Whether the server accepts connections (its socket comes before it does)."""
    return subprocess.run([os.path.join(bindir, "pg_isready"), "-q", "-h", pg, "-d", "postgres"],
                          env=native_env(), timeout=30).returncode == 0


def serve(ctx, bindir, pg, server, first, second):
    wait_for(lambda: ready(bindir, pg), 120, "the server accepting connections",
             interval=0.2, alive=server.check_alive)
    t0 = time.monotonic()
    sessions = [psql(ctx, pg, "psql-sort-hash", first), psql(ctx, pg, "psql-index", second)]
    for app, session in zip(sessions, (first, second)):
        rc = app.wait(900, app.name)
        got = [ln for ln in app.text().splitlines() if ln and not ln.startswith("memext:")]
        want = ["SET", "SET"] + [w for _, w in session]
        if rc != 0 or got != want:
            ctx.fail(f"{app.name} ({app.status()}) printed {got}, expected {want}")
        else:
            log(f"{app.name}: all {len(session)} answers right")
    log(f"both sessions done in {time.monotonic() - t0:.1f} s")

    server.proc.send_signal(signal.SIGINT)   # fast shutdown
    rc = server.wait(120, "the server's shutdown")
    if rc != 0:
        ctx.fail(f"postgres exited {rc} on SIGINT:\n{server.output(20)}")


def stop_server(server):
    """Nothing of the server outlives the test: its children each run in a session of their
    own (postgres calls setsid()), which killing the postmaster's group would miss."""
    if not server.alive():
        return
    children = descendants(server.pid)
    server.proc.send_signal(signal.SIGQUIT)   # immediate shutdown
    try:
        server.proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    for pid in [server.pid] + children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.proc.wait()


if __name__ == "__main__":
    sys.exit(e2elib.run("postgres", body, packages=["postgresql"], binaries=["psql"],
                        budget="64M", argv=sys.argv[1:]))
