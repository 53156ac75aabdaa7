// SPDX-License-Identifier: MIT
// bench/real-apps: a V8 (Node.js) heap larger than the budget. A Map of N entries (string
// keys, an object with a string and an array each), then three passes of N random lookups,
// each value checked, and a full collection (global.gc(), run with --expose-gc) after each
// pass. Prints one line that must be the same in every configuration.
"use strict";

const n = parseInt(process.argv[2], 10);
if (!(n > 0)) {
	console.error("usage: node --expose-gc big.js N");
	process.exit(2);
}

function value(i) {
	return { id: i, s: "value-" + i + "-" + ((i * 7919) % 100003), a: [i & 0xffff, i ^ 0x5555] };
}

function same(got, want) {
	return got !== undefined && got.id === want.id && got.s === want.s &&
		got.a[0] === want.a[0] && got.a[1] === want.a[1];
}

const table = new Map();
for (let i = 0; i < n; i++)
	table.set("key-" + i, value(i));

let seed = 1, total = 0;
function rand() { // 31-bit LCG: the same sequence in every run
	seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff;
	return seed;
}
for (let pass = 0; pass < 3; pass++) {
	for (let j = 0; j < n; j++) {
		const key = rand() % n, got = table.get("key-" + key);
		if (!same(got, value(key))) {
			console.error(`wrong value for ${key}: ${JSON.stringify(got)}`);
			process.exit(1);
		}
		total += got.s.length;
	}
	global.gc();
}
console.log("ok", table.size, total);
