#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""MariaDB under the shim: InnoDB's buffer pool about 4x the budget, every answer recomputed.

mariadbd is one process of many threads (InnoDB's page cleaners, purge, I/O through io_uring
or native AIO into buffer pool pages, each connection a thread) whose memory is mostly one
large buffer pool. A table of ROWS rows (an int key, a scattered int with a secondary index,
and 192 characters of md5 hex) is generated in SQL, then read three ways: a full scan summing
crc32() of every row's text, a range scan through the secondary index (random access into the
clustered index) and a full scan of the secondary index. Each sum is recomputed in Python and
must match; the server then shuts down cleanly and exits 0. The buffer pool (~140 MiB of data
at 32 MiB budget) must be held near the budget, pages evicted and brought back. The server
runs as root here (--user=root): it must reach /dev/userfaultfd.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import zlib

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import Skip, log, native_env, wait_for  # noqa: E402

ROWS = 400_000
MOD = 100003
K_LO, K_HI = 1000, 40000


def text(n):
    return "".join(hashlib.md5(str(n + i).encode()).hexdigest() for i in range(6))


def expected(rows):
    """The three answers, as the client prints them (tab-separated)."""
    total_crc = range_crc = 0
    total_k = 0
    for n in range(1, rows + 1):
        k = n * 7919 % MOD
        c = zlib.crc32(text(n).encode())
        total_crc += c
        total_k += k
        if K_LO <= k <= K_HI:
            range_crc += c
    return [f"{rows}\t{total_crc}\t{total_k}", f"{range_crc}", f"{total_k}"]


def sql(rows):
    md5s = ", ".join(f"MD5(n+{i})" if i else "MD5(n)" for i in range(6))
    return [
        "CREATE DATABASE t",
        "CREATE TABLE t.big (id INT PRIMARY KEY, k INT, s CHAR(192), KEY(k)) ENGINE=InnoDB",
        f"SET SESSION max_recursive_iterations={rows + 1}; "
        f"INSERT INTO t.big WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM seq "
        f"WHERE n < {rows}) SELECT n, n*7919 % {MOD}, CONCAT({md5s}) FROM seq",
    ], [
        "SELECT count(*), sum(crc32(s)), sum(k) FROM t.big",
        f"SELECT sum(crc32(s)) FROM t.big FORCE INDEX(k) WHERE k BETWEEN {K_LO} AND {K_HI}",
        "SELECT sum(k) FROM t.big FORCE INDEX(k)",
    ]


def client(sock, statement):
    r = subprocess.run(["mariadb", "-S", sock, "-uroot", "-N", "-B", "-e", statement],
                       env=native_env(), capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise e2elib.TestFailure(f"mariadb -e {statement[:60]!r}... exited {r.returncode}: "
                                 f"{r.stderr.strip()[-500:]}")
    return r.stdout.strip()


def body(ctx):
    if os.geteuid() != 0:
        raise Skip("needs root: the server must reach /dev/userfaultfd")
    rows = max(1000, int(ROWS * ctx.budget / (32 << 20) * ctx.args.scale))
    want = expected(rows)
    data = os.path.join(ctx.tmp, "data")
    sock = os.path.join(ctx.tmp, "mariadb.sock")
    r = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}",
                        "--user=root", "--auth-root-authentication-method=normal"],
                       env=native_env(), capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        ctx.fail(f"mariadb-install-db exited {r.returncode}: {r.stdout[-500:]}{r.stderr[-500:]}")
        return

    ctx.phase("mariadb")
    server = ctx.spawn("mariadbd", [
        shutil.which("mariadbd") or "/usr/sbin/mariadbd", "--no-defaults", f"--datadir={data}",
        "--user=root", f"--socket={sock}", "--skip-networking",
        f"--pid-file={os.path.join(ctx.tmp, 'mariadb.pid')}",
        f"--innodb-buffer-pool-size={max(64, 6 * ctx.budget >> 20)}M",
        "--innodb-log-file-size=64M", "--innodb-flush-log-at-trx-commit=0",
        "--skip-log-bin", f"--log-error={os.path.join(ctx.tmp, 'mariadb.err')}"])
    try:
        wait_for(lambda: os.path.exists(sock), 120, "the server's socket", interval=0.2,
                 alive=server.check_alive)
        load, reads = sql(rows)
        for statement in load:
            client(sock, statement)
        log(f"{rows} rows loaded")
        for i, statement in enumerate(reads):
            got = client(sock, statement)
            if got != want[i]:
                ctx.fail(f"{statement}: {got!r}, expected {want[i]!r}")
            else:
                log(f"answer {i + 1} of {len(reads)} right: {got}")
        client(sock, "SHUTDOWN")
        rc = server.wait(120, "the server's shutdown")
        if rc != 0:
            ctx.fail(f"mariadbd exited {rc} after SHUTDOWN:\n{server.output(20)}")
    finally:
        server.kill()
    # The buffer pool holds the table and its index, ~140 MiB at the default scale: counted as
    # 3x the budget, so that at least 1.25x the budget must have been evicted.
    ctx.check_memext(footprint=3 * ctx.budget, min_pswpin_frac=0.25)


if __name__ == "__main__":
    sys.exit(e2elib.run("mariadb", body, packages=["mariadb-server", "mariadb-client"],
                        binaries=["mariadbd", "mariadb"], budget="32M", argv=sys.argv[1:]))
