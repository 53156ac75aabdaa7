# SPDX-License-Identifier: MIT
# bench/real-apps: an awk (gawk) heap larger than the budget. An associative array of n
# entries, n random lookups with every value checked, then a walk over every entry. Prints
# one line that must be the same in every configuration. gawk -v n=N -f big.awk
function value(i) { return sprintf("v%d-%d", i, i * 7919 % 100003) }
BEGIN {
	if (n == "") { print "usage: gawk -v n=N -f big.awk" > "/dev/stderr"; exit 2 }
	for (i = 0; i < n; i++)
		h["k" i] = value(i)
	srand(7)
	total = 0
	for (j = 0; j < n; j++) {
		k = int(rand() * n)
		if (h["k" k] != value(k)) { print "wrong value for k" k > "/dev/stderr"; exit 1 }
		total += length(h["k" k])
	}
	count = 0
	for (k in h)
		count++
	print "ok", count, total
}
