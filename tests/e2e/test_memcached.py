#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""memcached under the shim at ~4x overcommit (default budget 64 MiB, ~256 MiB of items).

Fills a deterministic key set (varied value lengths, word text), reads every key back, runs a
deterministic load (multi-gets checked against the model, overwrites with a new generation
and length, deletes, appends, adds back), then re-reads and verifies every key: present
ones byte for byte, deleted ones absent. memcached's own cache eviction is ruled out
(-m far above the data, stats evictions must be 0). memcached listens on a unix socket in the
temp dir only (which disables its network listeners).
"""

import os
import random
import socket
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402
from e2elib import TestFailure, log, mib  # noqa: E402


class Memcached:
    """A minimal text-protocol client over a unix socket."""

    def __init__(self, path, timeout=120):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.r = self.sock.makefile("rb", buffering=1 << 20)

    def line(self):
        ln = self.r.readline()
        if not ln:
            raise TestFailure("memcached closed the connection")
        return ln[:-2]

    def store_many(self, cmd, items, expect=b"STORED"):
        """items: list of (key, value); one reply line each."""
        self.sock.sendall(b"".join(b"%s %s 0 0 %d\r\n%s\r\n" % (cmd, k, len(v), v)
                                   for k, v in items))
        out = []
        for k, _ in items:
            rep = self.line()
            if expect is not None and rep != expect:
                raise TestFailure(f"{cmd.decode()} {k.decode()}: {rep!r}")
            out.append(rep)
        return out

    def delete_many(self, keys):
        self.sock.sendall(b"".join(b"delete %s\r\n" % k for k in keys))
        for k in keys:
            rep = self.line()
            if rep != b"DELETED":
                raise TestFailure(f"delete {k.decode()}: {rep!r}")

    def get_many(self, keys):
        self.sock.sendall(b"get " + b" ".join(keys) + b"\r\n")
        got = {}
        while True:
            ln = self.line()
            if ln == b"END":
                return got
            parts = ln.split()
            if parts[0] != b"VALUE" or len(parts) < 4:
                raise TestFailure(f"get: unexpected reply {ln!r}")
            n = int(parts[3])
            data = self.r.read(n + 2)
            if len(data) != n + 2 or data[-2:] != b"\r\n":
                raise TestFailure(f"get {parts[1].decode()}: short or malformed data block")
            got[parts[1]] = data[:-2]

    def stats(self, arg=b""):
        self.sock.sendall(b"stats" + (b" " + arg if arg else b"") + b"\r\n")
        d = {}
        while True:
            ln = self.line()
            if ln == b"END":
                return d
            p = ln.split()
            d[p[1].decode()] = p[2].decode()

    def close(self):
        self.r.close()
        self.sock.close()


def body(ctx):
    corpus = e2elib.Corpus(seed=11)
    target = int(4 * ctx.budget * ctx.args.scale)
    lo, hi = 100, 3000
    nkeys = target // ((lo + hi) // 2)
    key = lambda i: b"mc:%08d" % i  # noqa: E731
    # model: key index -> (generation, length, appended suffix count); None = deleted
    model = [(0, e2elib.item_len(i, lo, hi), 0) for i in range(nkeys)]

    def expected(i):
        m = model[i]
        if m is None:
            return None
        gen, n, app = m
        v = corpus.value(i, gen, n)
        for a in range(app):
            v += b"|app%d:%d" % (i, a)
        return v

    sock = os.path.join(ctx.tmp, "memcached.sock")
    # -m far above the data: memcached itself must not evict anything; -s disables TCP/UDP
    cmd = ["memcached", "-s", sock, "-a", "0700", "-m", "4096", "-t", "2", "-c", "64", "-v"]
    if os.geteuid() == 0:
        cmd += ["-u", "root"]          # memcached refuses to run as root without it
    server = ctx.spawn("memcached", cmd)
    e2elib.wait_for(lambda: (ctx.check_alive(server), e2elib.is_socket(sock))[1], 30,
                    "memcached creating its socket")
    mc = Memcached(sock)

    batch = 500

    def verify_all(label):
        t0 = time.monotonic()
        bad, present = [], 0
        for start in range(0, nkeys, batch):
            ids = range(start, min(nkeys, start + batch))
            got = mc.get_many([key(i) for i in ids])
            for i in ids:
                exp, g = expected(i), got.get(key(i))
                if g != exp:
                    bad.append((i, exp, g))
                elif g is not None:
                    present += 1
        if bad:
            i, exp, g = bad[0]
            raise TestFailure(f"{label}: {len(bad)} of {nkeys} keys wrong; first "
                              f"{key(i).decode()}: expected "
                              f"{None if exp is None else exp[:50]}... got "
                              f"{None if g is None else g[:50]}... "
                              f"({None if g is None else len(g)} bytes)")
        log(f"{label}: all {nkeys} keys verified ({present} present) in "
            f"{time.monotonic() - t0:.1f} s")

    ctx.phase("fill")
    t0 = time.monotonic()
    for start in range(0, nkeys, batch):
        mc.store_many(b"set", [(key(i), expected(i))
                               for i in range(start, min(nkeys, start + batch))])
    st = mc.stats()
    slabs = mc.stats(b"slabs")
    footprint = int(slabs.get("total_malloced", st["bytes"]))
    log(f"filled {nkeys} keys, {mib(target)} of values in {time.monotonic() - t0:.1f} s; "
        f"memcached bytes {mib(int(st['bytes']))}, total_malloced {mib(footprint)}, RssAnon "
        f"{mib(ctx.rss(server) or 0)}")
    if footprint < 3 * ctx.budget:
        ctx.fail(f"memcached holds {mib(footprint)}, not 3x the budget: no overcommit")

    ctx.phase("verify-fill")
    verify_all("after the fill")

    ctx.phase("load")
    rng = random.Random(5)
    ops = {"get": 0, "set": 0, "delete": 0, "append": 0, "add": 0}
    t0 = time.monotonic()
    rounds = int(400 * ctx.args.scale)
    for _ in range(rounds):
        # a multi-get of random keys, checked against the model
        ids = sorted(set(rng.randrange(nkeys) for _ in range(100)))
        got = mc.get_many([key(i) for i in ids])
        ops["get"] += len(ids)
        for i in ids:
            if got.get(key(i)) != expected(i):
                raise TestFailure(f"load: get {key(i).decode()} returned "
                                  f"{(got.get(key(i)) or b'(missing)')[:50]!r}, expected "
                                  f"{(expected(i) or b'(missing)')[:50]!r}")
        # overwrites with a new generation and length
        sets = []
        for i in set(rng.randrange(nkeys) for _ in range(40)):
            g = model[i][0] + 1 if model[i] else 1
            model[i] = (g, e2elib.item_len(i * 31 + g, lo, hi), 0)
            sets.append((key(i), expected(i)))
        mc.store_many(b"set", sets)
        ops["set"] += len(sets)
        # deletes, appends, and adds of deleted keys
        dels = [i for i in set(rng.randrange(nkeys) for _ in range(5)) if model[i] is not None]
        mc.delete_many([key(i) for i in dels])
        for i in dels:
            model[i] = None
        ops["delete"] += len(dels)
        apps = [i for i in set(rng.randrange(nkeys) for _ in range(5)) if model[i] is not None]
        mc.store_many(b"append", [(key(i), b"|app%d:%d" % (i, model[i][2])) for i in apps])
        for i in apps:
            g, n, a = model[i]
            model[i] = (g, n, a + 1)
        ops["append"] += len(apps)
        adds = [i for i in set(rng.randrange(nkeys) for _ in range(10)) if model[i] is None]
        for i in adds:
            model[i] = (100, e2elib.item_len(i + 100, lo, hi), 0)
        mc.store_many(b"add", [(key(i), expected(i)) for i in adds])
        ops["add"] += len(adds)
        ctx.check_alive(server)
    log(f"load: {ops} in {time.monotonic() - t0:.1f} s")

    ctx.phase("verify-end")
    verify_all("at the end")
    st = mc.stats()
    live = sum(1 for m in model if m is not None)
    log(f"memcached stats: curr_items {st['curr_items']}, evictions {st['evictions']}, "
        f"bytes {mib(int(st['bytes']))}")
    if int(st["evictions"]) != 0:
        ctx.fail(f"memcached evicted {st['evictions']} items itself (-m too small?)")
    if int(st["curr_items"]) != live:
        ctx.fail(f"memcached has {st['curr_items']} items, the model {live}")
    mc.close()

    ctx.phase("shutdown")
    server.proc.terminate()
    rc = server.wait(60, "memcached after SIGTERM")
    if rc not in (0, -15):
        ctx.fail(f"memcached exited {rc} on SIGTERM:\n{server.output()}")
    ctx.check_memext(footprint=footprint)


if __name__ == "__main__":
    sys.exit(e2elib.run("memcached", body, packages=["memcached"], binaries=["memcached"],
                        budget="64M"))
