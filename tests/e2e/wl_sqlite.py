# SPDX-License-Identifier: MIT
"""Workload, run under the shim: sqlite3 :memory: with per-row hashes.

    python3 wl_sqlite.py BYTES

Inserts rows until the payloads total BYTES (varied lengths, word text), each with the
sha256 of its payload; updates a fifth of the rows (new generation, new length, new hash),
deletes some, then runs PRAGMA integrity_check, re-hashes every row and compares it with its
stored hash and with the payload regenerated from the model, looks rows up through the index,
and runs PRAGMA integrity_check again. Exit 0 when everything matches, 1 with the first bad
row otherwise.
"""

import hashlib
import os
import random
import sqlite3
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import Corpus, item_len, parse_size  # noqa: E402

LO, HI = 200, 3000


def phase(name):
    print(f"phase {name}", flush=True)


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def main():
    total = parse_size(sys.argv[1])
    corpus = Corpus(seed=23)
    nrows = total // ((LO + HI) // 2)

    def length(i, gen):
        return item_len(i * 7 + gen, LO, HI)

    def payload(i, gen):
        return corpus.value(i, gen, length(i, gen))

    t0 = time.monotonic()
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, gen INTEGER NOT NULL, "
                "payload BLOB NOT NULL, h BLOB NOT NULL)")
    con.execute("CREATE UNIQUE INDEX t_k ON t(k)")

    phase("fill")
    gens = [0] * nrows          # model: generation of each row, None = deleted
    batch = 2000
    for start in range(0, nrows, batch):
        rows = []
        for i in range(start, min(nrows, start + batch)):
            p = payload(i, 0)
            rows.append((i, f"k{i:09d}", 0, p, hashlib.sha256(p).digest()))
        with con:
            con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?)", rows)
    n, size = con.execute("SELECT count(*), total(length(payload)) FROM t").fetchone()
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    psize = con.execute("PRAGMA page_size").fetchone()[0]
    print(f"filled {n} rows, {size / 2**20:.1f} MiB of payload, database {pages} pages of "
          f"{psize} = {pages * psize / 2**20:.1f} MiB, {time.monotonic() - t0:.1f} s",
          flush=True)
    print(f"footprint {pages * psize}", flush=True)

    phase("update")
    rng = random.Random(17)
    upd = sorted(set(rng.randrange(nrows) for _ in range(nrows // 5)))
    for start in range(0, len(upd), batch):
        rows = []
        for i in upd[start:start + batch]:
            gens[i] += 1
            p = payload(i, gens[i])
            rows.append((gens[i], p, hashlib.sha256(p).digest(), i))
        with con:
            con.executemany("UPDATE t SET gen = ?, payload = ?, h = ? WHERE id = ?", rows)
    dels = sorted(set(rng.randrange(nrows) for _ in range(nrows // 50)))
    with con:
        con.executemany("DELETE FROM t WHERE id = ?", [(i,) for i in dels])
    for i in dels:
        gens[i] = None
    print(f"updated {len(upd)} rows, deleted {len(dels)}", flush=True)

    def integrity(label):
        r = con.execute("PRAGMA integrity_check").fetchall()
        if r != [("ok",)]:
            fail(f"PRAGMA integrity_check {label}: {r[:10]}")
        print(f"PRAGMA integrity_check {label}: ok", flush=True)

    phase("integrity")
    integrity("after the updates")

    phase("rehash")
    t1 = time.monotonic()
    seen = 0
    expect_ids = (i for i in range(nrows) if gens[i] is not None)
    for (rid, k, gen, p, h) in con.execute("SELECT id, k, gen, payload, h FROM t ORDER BY id"):
        want = next(expect_ids, None)
        if rid != want:
            fail(f"row id {rid} where the model has {want}")
        if hashlib.sha256(p).digest() != h:
            fail(f"row {rid}: sha256 of its payload {hashlib.sha256(p).hexdigest()} differs from "
                 f"its stored hash {h.hex()}; payload starts {p[:60]!r}")
        if gen != gens[rid] or k != f"k{rid:09d}":
            fail(f"row {rid}: gen {gen} k {k!r}, the model says gen {gens[rid]}")
        if p != payload(rid, gen):
            fail(f"row {rid}: payload differs from the regenerated one (gen {gen}); got "
                 f"{p[:60]!r}")
        seen += 1
    if next(expect_ids, None) is not None:
        fail(f"only {seen} rows read back, the model has more")
    print(f"re-hashed {seen} rows in {time.monotonic() - t1:.1f} s", flush=True)

    phase("lookup")
    for i in (rng.randrange(nrows) for _ in range(2000)):
        r = con.execute("SELECT id, h FROM t WHERE k = ?", (f"k{i:09d}",)).fetchone()
        if gens[i] is None:
            if r is not None:
                fail(f"deleted row {i} found through the index")
        elif r is None or r[0] != i or r[1] != hashlib.sha256(payload(i, gens[i])).digest():
            fail(f"index lookup of k{i:09d}: {r}")
    integrity("at the end")
    con.close()
    print(f"ok in {time.monotonic() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
