#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""lines.py SIZE: about SIZE bytes of text lines on stdout, the same every run.

Each line is 8 words from a seeded vocabulary of 50 000 and a number below 10^9, separated by
spaces: input for GNU sort (bench/real-apps/run.sh --apps sort, tests/e2e/test_sort.py).
"""

import random
import sys


def make_lines(size, seed=1):
    """The lines (bytes, each ending in a newline), about size bytes in all."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["".join(rnd.choice(letters) for _ in range(rnd.randint(3, 10)))
             for _ in range(50000)]
    lines, total = [], 0
    while total < size:
        ln = (" ".join(rnd.choices(words, k=8)) + f" {rnd.randrange(10**9)}\n").encode()
        lines.append(ln)
        total += len(ln)
    return lines


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: lines.py SIZE (bytes)")
    out = sys.stdout.buffer
    for ln in make_lines(int(sys.argv[1])):
        out.write(ln)
