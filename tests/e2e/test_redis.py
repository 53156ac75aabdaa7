#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""redis-server under the shim at ~4x overcommit (default budget 64 MiB, ~256 MiB of values).

Fills a deterministic data set with pipelined SETs (varied lengths, word text: compressible
but not trivially), reads every key back, then checks DEBUG DIGEST is unchanged after
redis-benchmark traffic (GETs over the data set in db 0, mixed writes in db 9, flushed),
after BGSAVE (a fork: the child shares the parent's evicted pages and writes the RDB from
them; parent and child stay bounded, totals.forks_shared grows, forks_drained does not) and
after DEBUG RELOAD NOSAVE (loads the child's RDB), and reads every key back again at the end.
With --kill-daemon-during traffic|bgsave, memextd is SIGKILLed in the middle of that phase
and a new one started on the same sockets: the same checks, and the new daemon must have
adopted redis-server (and the BGSAVE child) with their evicted pages, losing none.
redis listens on a unix socket in the temp dir only (port 0), no fixed port.
"""

import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import MiB, TestFailure, log, mib  # noqa: E402

BENCH_DB = 9


class Redis:
    """A minimal RESP2 client over a unix socket."""

    def __init__(self, path, timeout=120):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.r = self.sock.makefile("rb", buffering=1 << 20)

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def reply(self):
        line = self.r.readline()
        if not line:
            raise TestFailure("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest
        if t == b"-":
            raise TestFailure(f"redis error: {rest.decode(errors='replace')}")
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.r.read(n + 2)
            return data[:-2]
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise TestFailure(f"bad RESP reply line {line!r}")

    def call(self, *args):
        self.sock.sendall(self.encode(*args))
        return self.reply()

    def pipeline(self, cmds):
        self.sock.sendall(b"".join(self.encode(*c) for c in cmds))
        return [self.reply() for _ in cmds]

    def close(self):
        self.r.close()
        self.sock.close()


def info(r, section):
    d = {}
    for line in r.call("INFO", section).decode().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            d[k] = v
    return d


def body(ctx):
    corpus = e2elib.Corpus(seed=7)
    budget = ctx.budget
    target = int(4 * budget * ctx.args.scale)    # bytes of values
    lo, hi = 64, 3000
    nkeys = target // ((lo + hi) // 2)
    key = lambda i: b"key:%012d" % i  # noqa: E731 (redis-benchmark's __rand_int__ format)
    val = lambda i: corpus.value(i, 0, e2elib.item_len(i, lo, hi))  # noqa: E731

    sock = os.path.join(ctx.tmp, "redis.sock")
    conf = os.path.join(ctx.tmp, "redis.conf")
    with open(conf, "w") as f:
        f.write(f"""port 0
unixsocket {sock}
unixsocketperm 700
daemonize no
supervised no
dir {ctx.tmp}
dbfilename dump.rdb
save ""
appendonly no
logfile ""
maxmemory 0
enable-debug-command yes
databases 16
""")
    server = ctx.spawn("redis-server", ["redis-server", conf])
    e2elib.wait_for(lambda: (ctx.check_alive(server), e2elib.is_socket(sock))[1], 30,
                    "redis-server creating its socket")
    r = Redis(sock)

    ctx.phase("fill")
    t = time.monotonic()
    batch = 1000
    for start in range(0, nkeys, batch):
        cmds = [(b"SET", key(i), val(i)) for i in range(start, min(nkeys, start + batch))]
        for rep in r.pipeline(cmds):
            if rep != b"OK":
                raise TestFailure(f"SET replied {rep!r}")
    mem = info(r, "memory")
    used = int(mem["used_memory"])
    log(f"filled {nkeys} keys, {mib(target)} of values in {time.monotonic() - t:.1f} s; "
        f"used_memory {mib(used)}, RssAnon {mib(ctx.rss(server) or 0)}")
    if r.call("DBSIZE") != nkeys:
        raise TestFailure(f"DBSIZE is {r.call('DBSIZE')}, expected {nkeys}")
    if used < 3 * budget:
        ctx.fail(f"used_memory {mib(used)} is not 3x the budget {mib(budget)}: no overcommit")

    def wrong_keys():
        bad = []
        for start in range(0, nkeys, batch):
            ids = range(start, min(nkeys, start + batch))
            for i, got in zip(ids, r.pipeline([(b"GET", key(i)) for i in ids])):
                if got != val(i):
                    bad.append((i, got))
        return bad

    def damage(bad):
        """What the wrong values look like: how many, and for the first few where they
        start to differ and whether what is there instead is zeroes (a page lost)."""
        lines = [f"{len(bad)} of {nkeys} keys have wrong values; DBSIZE {r.call('DBSIZE')}"]
        for i, got in bad[:5]:
            want = val(i)
            if got is None:
                lines.append(f"  {key(i).decode()}: missing ({len(want)} bytes expected)")
                continue
            at = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]),
                      min(len(got), len(want)))
            rest = got[at:at + 64]
            lines.append(f"  {key(i).decode()}: {len(got)} bytes ({len(want)} expected), "
                         f"differs from byte {at}: {rest[:32]!r}"
                         f"{' (zeroes)' if rest and not rest.strip(bytes(1)) else ''}")
        return "\n".join(lines)

    def verify_all(label):
        t0 = time.monotonic()
        bad = wrong_keys()
        if bad:
            raise TestFailure(f"{label}: {damage(bad)}")
        log(f"{label}: all {nkeys} keys verified in {time.monotonic() - t0:.1f} s")

    ctx.phase("verify-fill")
    verify_all("after the fill")
    digest = r.call("DEBUG", "DIGEST")
    log(f"DEBUG DIGEST {digest.decode()}")

    def check_digest(label):
        d = r.call("DEBUG", "DIGEST")
        if d != digest:
            # Which keys, and how: the next person to see this needs more than a hash.
            bad = wrong_keys()
            raise TestFailure(f"DEBUG DIGEST {label}: {d.decode()}, was {digest.decode()}; "
                              f"{damage(bad) if bad else 'every key of db 0 reads right'}")
        log(f"DEBUG DIGEST {label}: unchanged")

    # --kill-daemon-during: SIGKILL memextd once redis has served 2000 commands of the
    # traffic (of 40000 GETs + 90000 writes), or once the BGSAVE child has written 1/16 of
    # the data set to its RDB: well inside the phase, whatever the machine's speed. A new
    # memextd is started on the same sockets; the test goes on and checks every byte.
    kill = ctx.args.kill_daemon_during
    kill_after_commands = 2000

    def kill_daemon(why):
        nonlocal kill
        log(f"{why}: SIGKILL memextd")
        kill = None
        ctx.kill_daemon()

    ctx.phase("traffic")
    bench = ["redis-benchmark", "-s", sock, "-q", "-c", "8", "-P", "8"]
    reads = int(40000 * ctx.args.scale)
    cmds = [bench + ["--dbnum", "0", "-t", "get", "-r", str(nkeys), "-n", str(reads)],
            bench + ["--dbnum", str(BENCH_DB), "-t", "set,incr,lpush,rpush,lpop,sadd,hset,"
                     "lrange_100,mset", "-r", "20000", "-d", "400", "-n", "10000"]]
    commands0 = int(info(r, "stats")["total_commands_processed"])
    for n, cmd in enumerate(cmds):
        log("running: " + " ".join(cmd))
        out_path = os.path.join(ctx.tmp, f"redis-benchmark-{n}.out")
        with open(out_path, "wb") as out:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=dict(os.environ, HOME=ctx.tmp))
        try:
            deadline = time.monotonic() + 300
            while p.poll() is None:
                ctx.check_alive(server)
                if kill == "traffic":
                    done = int(info(r, "stats")["total_commands_processed"]) - commands0
                    if done >= kill_after_commands and p.poll() is None:
                        kill_daemon(f"redis served {done} commands of the traffic and "
                                    f"redis-benchmark {p.pid} is running")
                if time.monotonic() > deadline:
                    raise TestFailure("redis-benchmark still running after 300 s (hang guard)")
                time.sleep(0.05)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        with open(out_path, errors="replace") as f:
            text = f.read()
        lines = [ln for ln in text.replace("\r", "\n").splitlines()
                 if "requests per second" in ln]
        log("  " + "; ".join(ln.strip() for ln in lines))
        if p.returncode != 0:
            raise TestFailure(f"redis-benchmark exited {p.returncode}:\n{text[-4000:]}")
        ctx.check_alive(server)
    if kill == "traffic":
        raise TestFailure("the traffic ended before memextd was killed: the crash test did "
                          "not test what it should")
    r.call("SELECT", BENCH_DB)
    r.call("FLUSHDB")
    r.call("SELECT", 0)
    check_digest("after redis-benchmark traffic")

    # BGSAVE forks. The child shares the parent's evicted pages instead of having them all
    # brought back first, so the parent stays bounded. The child is a client of its own with
    # the same MEMEXT_BUDGET (inherited): it starts with the parent's resident pages (shared
    # copy-on-write, under the bound) and everything it reads of the evicted data comes
    # through its own faults, which memext holds to its budget, so it is bounded too (the
    # sampler takes redis-server's descendants): a BGSAVE must not double resident memory.
    if ctx.args.squeeze_before_bgsave:
        squeeze(ctx, server)
    ctx.bound_children = True
    ctx.phase("bgsave")
    before = ctx.totals()
    rdb = os.path.join(ctx.tmp, "dump.rdb")
    r.call("BGSAVE")

    def saved():
        ctx.check_alive(server)
        p = info(r, "persistence")
        if kill == "bgsave" and p["rdb_bgsave_in_progress"] == "1":
            kids = e2elib.descendants(server.pid)
            tmp_rdb = [os.path.join(ctx.tmp, f"temp-{k}.rdb") for k in kids]
            written = max([os.path.getsize(f) for f in tmp_rdb if os.path.exists(f)] or [0])
            if written >= target // 16:
                kill_daemon(f"the BGSAVE child {kids} has written {mib(written)} of its RDB")
        return p["rdb_bgsave_in_progress"] == "0" and p
    p = e2elib.wait_for(saved, 180, "BGSAVE", interval=0.05 if kill else 0.2)
    if p["rdb_last_bgsave_status"] != "ok" or not os.path.exists(rdb):
        raise TestFailure(f"BGSAVE failed: {p}; redis output:\n{server.output()}")
    if kill == "bgsave":
        raise TestFailure("BGSAVE ended before memextd was killed: the crash test did not "
                          "test what it should")
    log(f"BGSAVE done: {os.path.getsize(rdb)} bytes, fork took "
        f"{info(r, 'stats').get('latest_fork_usec')} us")
    check_digest("after BGSAVE")
    after = ctx.totals()
    fk = {k: after.get(k, 0) - before.get(k, 0)
          for k in ("forks_shared", "forks_drained", "fork_pages_shared")}
    log(f"BGSAVE: totals.forks_shared grew by {fk['forks_shared']}, forks_drained by "
        f"{fk['forks_drained']}, fork_pages_shared by {fk['fork_pages_shared']}")
    if fk["forks_shared"] < 1:
        ctx.fail(f"totals.forks_shared grew by {fk['forks_shared']} over the BGSAVE: the fork "
                 f"child did not share the parent's evicted pages")
    if fk["forks_drained"] != 0:
        ctx.fail(f"totals.forks_drained grew by {fk['forks_drained']} over the BGSAVE: the "
                 f"fork brought the evicted pages back")
    if fk["fork_pages_shared"] <= 0:
        ctx.fail(f"totals.fork_pages_shared grew by {fk['fork_pages_shared']} over the "
                 f"BGSAVE: no evicted page was shared with the child")
    children = ctx.forked_pids(server)

    ctx.phase("reload")
    r.call("DEBUG", "RELOAD", "NOSAVE")
    check_digest("after DEBUG RELOAD NOSAVE (the BGSAVE child's RDB)")

    ctx.phase("verify-end")
    verify_all("at the end")
    ctx.check_alive(server)
    mem = info(r, "memory")
    log(f"used_memory {mib(int(mem['used_memory']))}, used_memory_rss "
        f"{mib(int(mem['used_memory_rss']))}")

    ctx.phase("shutdown")
    try:
        r.call("SHUTDOWN", "NOSAVE")
    except (TestFailure, OSError):
        pass          # the connection closes
    r.close()
    rc = server.wait(60, "redis-server after SHUTDOWN NOSAVE")
    if rc != 0:
        ctx.fail(f"redis-server exited {rc} after SHUTDOWN NOSAVE:\n{server.output()}")
    ctx.check_memext(footprint=used)
    log(f"BGSAVE child(ren) of redis-server: {children}")
    if not children:
        ctx.fail("no RssAnon sample of the BGSAVE child was taken")
    for pid in children:
        seen = ctx.sampler.seen.get(pid)
        if seen is None:
            log(f"(BGSAVE child {pid} was not caught by a stats sample)")
        elif seen["budget_bytes"] != {budget}:
            ctx.fail(f"BGSAVE child {pid}: budget_bytes {seen['budget_bytes']} in the stats, "
                     f"its parent's MEMEXT_BUDGET is {budget}")
    if ctx.args.kill_daemon_during:
        # the BGSAVE child was alive at the kill only in the bgsave variant
        ctx.check_adoption([server.pid] + (children if ctx.args.kill_daemon_during == "bgsave"
                                           else []))


def squeeze(ctx, server):
    """The whole system short of memory for a while (the stand-in meminfo between its min and
    low watermarks): reclaim takes a batch from every client each round, past its budget,
    until redis has almost nothing resident, its allocator's cold metadata included. The
    BGSAVE child that follows then finds nearly all it reads evicted: with libraries'
    atfork handlers run before the shim's hello, its jemalloc crashed on zeroed metadata."""
    if ctx.args.system_available_pct is None:
        raise TestFailure("--squeeze-before-bgsave needs --system-available-pct")
    secs = ctx.args.squeeze_before_bgsave
    ctx.phase("squeeze")
    ctx.daemon.set_available_pct(3)
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        ctx.check_alive(server)
        time.sleep(0.5)
    ctx.daemon.set_available_pct(ctx.args.system_available_pct)
    rss = ctx.rss(server)
    log(f"after {secs} s of system pressure: redis-server RssAnon {mib(rss)} "
        f"(budget {mib(ctx.budget)})")
    if rss is None or rss > ctx.budget // 2:
        ctx.fail(f"the system pressure left redis-server {mib(rss or 0)} resident, more than "
                 f"half its budget: the squeeze did not squeeze")


if __name__ == "__main__":
    def add_args(ap):
        ap.add_argument("--squeeze-before-bgsave", type=float, default=0, metavar="SECS",
                        help="before BGSAVE, make the system short of memory for SECS s "
                             "(needs --system-available-pct), so that almost everything is "
                             "evicted when redis forks")
        ap.add_argument("--kill-daemon-during", choices=["traffic", "bgsave"], default=None,
                        help="SIGKILL memextd in the middle of this phase and start a new one "
                             "on the same sockets: every byte must still be right, and the "
                             "new daemon must adopt redis (and the BGSAVE child) losing no "
                             "page")

    sys.exit(e2elib.run("redis", body, packages=["redis-server", "redis-tools"],
                        binaries=["redis-server", "redis-benchmark"], budget="64M",
                        add_args=add_args))
