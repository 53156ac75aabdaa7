# SPDX-License-Identifier: MIT
# bench/real-apps: a CPython heap larger than the budget. A dict of N entries (int keys,
# str values, a tuple each), then three passes of N random lookups, each value checked, and
# a full collection (gc.collect(), which walks every tracked object) after each pass. Prints
# one line that must be the same in every configuration.
import gc
import random
import sys


def value(i):
    return ("value-%d-%d" % (i, i * 7919 % 100003), i & 0xFFFF)


n = int(sys.argv[1])
table = {i: value(i) for i in range(n)}
rng = random.Random(1)
total = 0
for _ in range(3):
    for _ in range(n):
        key = rng.randrange(n)
        got = table[key]
        if got != value(key):
            sys.exit("wrong value for %d: %r" % (key, got))
        total += len(got[0])
    gc.collect()
print("ok", len(table), total)
