# SPDX-License-Identifier: MIT
"""Workload, run under the shim: python3 building and checking large objects.

    python3 wl_pyobj.py BYTES

Builds, in about BYTES of memory: a list of large ints, a dict of str -> bytes (word text,
varied lengths), a list of 1 MiB bytearrays, a list of tuples (int, str, float). Takes a
sha256 of each right after building it, mutates them deterministically (ints incremented,
dict values replaced and keys deleted, bytearray slices reversed), then recomputes every
checksum from the objects and compares it with the same checksum computed from a
regeneration of the expected content (streamed, never held). Exit 0 when they match, 1
otherwise.
"""

import gc
import hashlib
import os
import sys
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2elib import Corpus, item_len, parse_size  # noqa: E402

MiB = 1 << 20


def phase(name):
    print(f"phase {name}", flush=True)


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def int_at(i):
    return (i * 0x9E3779B97F4A7C15 + 12345) % (1 << 61) + (1 << 40)


def float_at(i):
    return i * 1.000001 + 0.5


def block(j, corpus):
    """1 MiB of bytes for bytearray j: corpus text at a j-dependent place, a header per KiB."""
    parts = []
    for kb in range(1024):
        h = b"[%d:%d]" % (j, kb)
        off = (j * 7919 + kb * 104729) % (corpus.size - 1024)
        parts.append(h + corpus.text[off:off + 1024 - len(h)])
    return bytearray(b"".join(parts))


def sha_ints(it):
    h = hashlib.sha256()
    buf = []
    for x in it:
        buf.append(x.to_bytes(8, "little"))
        if len(buf) >= 65536:
            h.update(b"".join(buf))
            buf = []
    h.update(b"".join(buf))
    return h.hexdigest()


def sha_items(it):
    h = hashlib.sha256()
    for k, v in it:
        h.update(k.encode())
        h.update(len(v).to_bytes(4, "little"))
        h.update(v)
    return h.hexdigest()


def sha_blocks(it):
    h = hashlib.sha256()
    for b in it:
        h.update(b)
    return h.hexdigest()


def sha_tuples(it):
    h = hashlib.sha256()
    buf = []
    for t in it:
        buf.append(repr(t).encode())
        if len(buf) >= 65536:
            h.update(b"\n".join(buf))
            buf = []
    h.update(b"\n".join(buf))
    return h.hexdigest()


def main():
    total = parse_size(sys.argv[1])
    quarter = total // 4
    corpus = Corpus(seed=31)
    t0 = time.monotonic()

    n_ints = quarter // 40                     # 32-byte int object + 8-byte list slot
    n_items = quarter // 1700                  # ~1.6 KiB value + key + dict slot
    n_blocks = quarter // MiB
    n_tuples = quarter // 200                  # tuple + int + str + float

    def value(i, gen):
        return corpus.value(i, gen, item_len(i * 3 + gen, 200, 3000))

    phase("build")
    ints = [int_at(i) for i in range(n_ints)]
    d = {f"key{i}": value(i, 0) for i in range(n_items)}
    blocks = [block(j, corpus) for j in range(n_blocks)]
    tuples = [(i, f"s{i:x}" * 3, float_at(i)) for i in range(n_tuples)]
    c0 = {"ints": sha_ints(ints), "dict": sha_items(d.items()), "blocks": sha_blocks(blocks),
          "tuples": sha_tuples(tuples)}
    print(f"built {n_ints} ints, {n_items} dict items, {n_blocks} x 1 MiB bytearrays, "
          f"{n_tuples} tuples in {time.monotonic() - t0:.1f} s", flush=True)

    phase("check-build")
    fresh0 = {"ints": sha_ints(int_at(i) for i in range(n_ints)),
              "dict": sha_items((f"key{i}", value(i, 0)) for i in range(n_items)),
              "blocks": sha_blocks(block(j, corpus) for j in range(n_blocks)),
              "tuples": sha_tuples((i, f"s{i:x}" * 3, float_at(i)) for i in range(n_tuples))}
    for k in c0:
        if c0[k] != fresh0[k]:
            fail(f"{k}: checksum after building {c0[k]} != regenerated {fresh0[k]}")

    phase("mutate")
    for i in range(0, n_ints, 7):
        ints[i] += 1
    for i in range(0, n_items, 5):
        d[f"key{i}"] = value(i, 1)
    for i in range(0, n_items, 13):
        del d[f"key{i}"]
    for j in range(0, n_blocks, 3):
        blocks[j][1000:300000] = blocks[j][1000:300000][::-1]
    gc.collect()

    phase("verify")
    t1 = time.monotonic()
    c1 = {"ints": sha_ints(ints), "dict": sha_items(d.items()), "blocks": sha_blocks(blocks),
          "tuples": sha_tuples(tuples)}

    def dict_items():
        # insertion order survives value replacement; deleted keys are skipped
        for i in range(n_items):
            if i % 13 == 0:
                continue
            yield f"key{i}", value(i, 1 if i % 5 == 0 else 0)

    def blocks_after():
        for j in range(n_blocks):
            b = block(j, corpus)
            if j % 3 == 0:
                b[1000:300000] = b[1000:300000][::-1]
            yield b

    fresh1 = {"ints": sha_ints(int_at(i) + (1 if i % 7 == 0 else 0) for i in range(n_ints)),
              "dict": sha_items(dict_items()),
              "blocks": sha_blocks(blocks_after()),
              "tuples": sha_tuples((i, f"s{i:x}" * 3, float_at(i)) for i in range(n_tuples))}
    bad = [k for k in c1 if c1[k] != fresh1[k]]
    if bad:
        # say where: the first differing element
        for i in range(n_ints):
            if ints[i] != int_at(i) + (1 if i % 7 == 0 else 0):
                print(f"ints[{i}] = {ints[i]:#x}, expected "
                      f"{int_at(i) + (1 if i % 7 == 0 else 0):#x}", flush=True)
                break
        for k, v in dict_items():
            if d.get(k) != v:
                print(f"d[{k!r}] = {(d.get(k) or b'(missing)')[:60]!r}, expected {v[:60]!r}",
                      flush=True)
                break
        fail(f"checksums differ for {bad}: objects {[c1[k] for k in bad]}, regenerated "
             f"{[fresh1[k] for k in bad]}")
    if len(d) != n_items - len(range(0, n_items, 13)):
        fail(f"dict has {len(d)} items")
    print(f"all checksums match ({time.monotonic() - t1:.1f} s): {c1}", flush=True)
    print(f"ok in {time.monotonic() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
