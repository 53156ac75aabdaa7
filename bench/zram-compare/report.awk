# SPDX-License-Identifier: MIT
# report.awk: turns run.sh's results.tsv (one line of key=value per run) into the markdown
# report, or with -v mode=bars into the plot's throughput data.
#   awk -f report.awk -v budget=BYTES -v footprint=BYTES results.tsv

function num(x) { return x != "" && x !~ /nan|inf/ }
function fmt(x, d) {
	if (!num(x)) return "–"
	if (d == "k") return x >= 10000 ? sprintf("%.0f k", x / 1000) : sprintf("%.1f k", x / 1000)
	return sprintf("%." d "f", x)
}
function ratio(a, b) { return num(a) && num(b) && b > 0 ? sprintf("%.2fx", a / b) : "–" }
function get(c, w, k) { return V[c, w, k] }
function rg(c, w) { return V[c, w, "range"] != "" ? " (" V[c, w, "range"] ")" : "" }
function mib(b) { return sprintf("%d MiB", b / 1048576) }

{
	n++
	for (i = 1; i <= NF; i++) {
		eq = index($i, "=")
		R[n, substr($i, 1, eq - 1)] = substr($i, eq + 1)
	}
	c = R[n, "config"]; w = R[n, "workload"]
	G[c, w] = G[c, w] " " n
	if (!((c, w) in seen_cw)) { seen_cw[c, w] = 1; cws[++ncw] = c SUBSEP w }
	if (c ~ /-nopressure$/) {
		if (!((w) in seen_np)) { seen_np[w] = 1; np[++nnp] = w }
	} else if (!((w) in seen)) { seen[w] = 1; wl[++nwl] = w }
}

# Of the runs of one configuration and workload, the median by its key figure (pages/s under
# pressure, wall time without): its figures are the ones reported, with the key's range.
function choose(c, w,   list, m, i, j, t, key, idx, val, lo, hi, k, kp) {
	key = c ~ /-nopressure$/ ? "ext_wall_s" : "pages_per_s"
	m = split(G[c, w], list, " ")
	for (i = 1; i <= m; i++) { idx[i] = list[i]; val[i] = num(R[list[i], key]) ? R[list[i], key] + 0 : -1 }
	for (i = 2; i <= m; i++)
		for (j = i; j > 1 && val[j - 1] > val[j]; j--) {
			t = val[j]; val[j] = val[j - 1]; val[j - 1] = t
			t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t
		}
	lo = val[1]; hi = val[m]
	i = int((m + 1) / 2)
	for (k in R) {
		split(k, kp, SUBSEP)
		if (kp[1] == idx[i]) V[c, w, kp[2]] = R[k]
	}
	V[c, w, "runs"] = m
	V[c, w, "range"] = m > 1 ? sprintf("%s–%s", key == "pages_per_s" ? fmt(lo, "k") : fmt(lo, 2), key == "pages_per_s" ? fmt(hi, "k") : fmt(hi, 2)) : ""
	return R[idx[i], "rep"]
}

# memext / kernel of each repetition alone: its two runs ran back to back (in turn one first,
# then the other, run.sh), so a machine that speeds up or slows down between repetitions moves
# both. Without pressure, memext / native of the whole process's wall time the same way. PR[id,
# "n"] ratios sorted in PR[id, 1..n], their order of run in PR[id, "list"]; with a single
# repetition none. id: the workload, or for no pressure the workload followed by "-nopressure".
function paired_ratios(   i, c, key) {
	for (i = 1; i <= n; i++) {
		c = R[i, "config"]
		key = c ~ /-nopressure$/ ? "ext_wall_s" : "pages_per_s"
		P[c, R[i, "workload"], R[i, "rep"]] = R[i, key]
		S[c, R[i, "workload"], R[i, "rep"]] = steal_pct(R[i, "steal_s"], R[i, "wall_s"])
	}
	for (i = 1; i <= nwl; i++)
		pair_runs("kernel", "memext", wl[i], wl[i])
	for (i = 1; i <= nnp; i++)
		pair_runs("native-nopressure", "memext-nopressure", np[i], np[i] "-nopressure")
}

# The ratios other / base of workload w's repetitions, in PR[id, ...] and, of those whose two
# runs both lost under QUIET_STEAL_PCT to the hypervisor, in PQ[id, ...].
function pair_runs(base, other, w, id,   rep, m, q, v) {
	m = 0; q = 0
	for (rep = 1; ((base, w, rep) in P) || ((other, w, rep) in P); rep++)
		if (num(P[base, w, rep]) && num(P[other, w, rep]) && P[base, w, rep] > 0) {
			v = P[other, w, rep] / P[base, w, rep]
			PR[id, ++m] = v
			PR[id, "list"] = PR[id, "list"] sprintf(" %.2f (%s / %s)", v,
				fmt(S[base, w, rep], 0), fmt(S[other, w, rep], 0))
			if (num(S[base, w, rep]) && num(S[other, w, rep]) &&
			    S[base, w, rep] < QUIET_STEAL_PCT && S[other, w, rep] < QUIET_STEAL_PCT)
				PQ[id, ++q] = v
		}
	PR[id, "n"] = m < 2 ? 0 : m
	PQ[id, "n"] = q
	sort_ratios(PR, id, m)
	sort_ratios(PQ, id, q)
}

function sort_ratios(A, w, m,   t, j, v) {
	for (t = 2; t <= m; t++)
		for (j = t; j > 1 && A[w, j - 1] > A[w, j]; j--) {
			v = A[w, j]; A[w, j] = A[w, j - 1]; A[w, j - 1] = v
		}
}

function median_of(A, w, m) {
	return m % 2 ? A[w, (m + 1) / 2] : (A[w, m / 2] + A[w, m / 2 + 1]) / 2
}

# The share of the vCPUs' time (%) the hypervisor gave to others during a measured phase of
# wall seconds in which it took steal seconds.
function steal_pct(steal, wall) {
	if (!num(steal) || !num(wall) || wall <= 0 || ncpu <= 0)
		return ""
	return 100 * steal / (wall * ncpu)
}

function paired_median(w) {
	return PR[w, "n"] ? median_of(PR, w, PR[w, "n"]) : ""
}

# The ratios of the repetitions, their median, the middle half of them (the second and third
# quartiles' bounds, by rank) and how many reached the target.
function round_ratios(   i, w, m, k, hit, printed) {
	for (i = 1; i <= nwl; i++) {
		w = wl[i]; m = PR[w, "n"]
		if (!m)
			continue
		hit = 0
		for (k = 1; k <= m; k++)
			hit += PR[w, k] >= target(w)
		k = int(m / 4) + 1
		if (!printed++) {
			print "\nmemext / kernel of each repetition alone (its two runs back to back, in turn one first;"
			print "in brackets the share of the vCPUs' time the hypervisor gave to others during the"
			print "kernel's and memext's runs, %), their median, the middle half of them, how many met the"
			printf "target, and the median of the repetitions whose two runs both lost under %d%%:\n\n", QUIET_STEAL_PCT
		}
		printf "- %s:%s; median %.2fx, middle half %.2f-%.2fx, %d of %d ≥ %.1fx; %s\n", w, PR[w, "list"],
			paired_median(w), PR[w, k], PR[w, m + 1 - k], hit, m, target(w),
			PQ[w, "n"] ? sprintf("on a quiet host %.2fx (%d of %d)", median_of(PQ, w, PQ[w, "n"]), PQ[w, "n"], m) : "never a quiet host"
	}
}

function describe(w,   c) {
	c = "memext"
	if (w == "seq") return "sequential scan: every page once, in address order"
	if (w == "rand-read") return "uniform random reads"
	if (w == "rand-write") return "uniform random writes (each touch checks the page, then rewrites it)"
	if (w == "zipf") return sprintf("Zipf (s = 1.2, scattered ranks), %s%% writes, after a warm-up of %s touches; a perfect LRU of the budget would still fault on %s%% of the touches", get(c, w, "write_pct"), get(c, w, "warmup"), fmt(get(c, w, "ideal_miss_pct"), 1))
	if (w == "rand-read-4t") return "uniform random reads, 4 threads (each on its own pages) on 2 vCPUs"
	if (w == "zipf-4t") return "Zipf, 50% writes, 4 threads"
	return w
}

function target(w) {
	if (w == "seq") return 1.5
	return 1.0
}

function cpu(c, w) {
	if (!num(get(c, w, "cpu_user_s"))) return ""
	return get(c, w, "cpu_user_s") + get(c, w, "cpu_sys_s") + get(c, w, "helper_cpu_s")
}

function row(c, w, label,   t, tc, rng) {
	if (get(c, w, "failed") == 1) { printf "| %s | FAILED | | | | | | |\n", label; return }
	t = get(c, w, "touches"); tc = cpu(c, w)
	rng = get(c, w, "range")
	printf "| %s | %s | %s | %s | %s | %s + %s | %s |\n", label,
		fmt(get(c, w, "pages_per_s"), "k") (rng != "" ? " (" rng ")" : ""), fmt(get(c, w, "fault_pct"), 1),
		c == "native" ? fmt(get(c, w, "all_p50_us"), 1) " (all)" : fmt(get(c, w, "fault_p50_us"), 1),
		c == "native" ? fmt(get(c, w, "all_p99_us"), 1) " (all)" : fmt(get(c, w, "fault_p99_us"), 1),
		fmt(get(c, w, "cpu_user_s") + get(c, w, "cpu_sys_s"), 2), fmt(get(c, w, "helper_cpu_s"), 2),
		(num(tc) && t > 0 ? fmt(tc * 1e6 / t, 1) : "–")
}

# From "comm:seconds,...": the seconds of the thread named name, or with name "" all of them
# joined with " / ".
function thread_cpu(list, name,   n, a, i, kv, out) {
	n = split(list, a, ",")
	out = ""
	for (i = 1; i <= n; i++) {
		split(a[i], kv, ":")
		if (name == "") out = out (out == "" ? "" : " / ") kv[2]
		else if (kv[1] == name) return kv[2]
	}
	return out == "" ? "–" : out
}

function bars(   i, w) {
	for (i = 1; i <= nwl; i++) {
		w = wl[i]
		printf "%s %s %s %s\n", w, num(get("native", w, "pages_per_s")) ? get("native", w, "pages_per_s") : 0,
			num(get("kernel", w, "pages_per_s")) ? get("kernel", w, "pages_per_s") : 0,
			num(get("memext", w, "pages_per_s")) ? get("memext", w, "pages_per_s") : 0
	}
}

END {
	QUIET_STEAL_PCT = 5
	for (g = 1; g <= ncw; g++) {
		split(cws[g], cw, SUBSEP)
		r = choose(cw[1], cw[2])
		if (mode == "chosen") print cw[2], cw[1], r
	}
	if (mode == "chosen") exit
	if (mode == "bars") { bars(); exit }

	printf "### Under pressure: budget %s, footprint %s (%d pages, 4 KiB, lz4 ratio %s in zram, %s in memext)\n\n",
		mib(budget), mib(footprint), footprint / 4096, fmt(get("kernel", wl[1], "zram_ratio"), 2),
		fmt(get("memext", wl[1], "store_ratio"), 2)
	print "Touches/s of the measured phase; a *fault* is a touch of a page that mincore() reported"
	print "not resident just before (native: no faults, latency of all touches). CPU: the"
	print "workload's user+sys (getrusage) + the helper's (memextd; kswapd0 for the kernel, whose"
	print "reclaim and zram compression otherwise run in the faulting task) over the measured phase.\n"
	print "The medians' ratio compares the median run of each; with more than one repetition, the"
	print "target is judged on the median of the repetitions' own ratios (below), which a host"
	print "slowing down or speeding up between repetitions does not move.\n"
	print "| workload | native | kernel zram | memext | memext / kernel, medians | by repetition, median | target | met | faults % kernel / memext |"
	print "|---|---:|---:|---:|---:|---:|---:|---|---:|"
	paired_ratios()
	for (i = 1; i <= nwl; i++) {
		w = wl[i]
		r = ratio(get("memext", w, "pages_per_s"), get("kernel", w, "pages_per_s"))
		pm = paired_median(w)
		judged = pm != "" ? pm : r + 0
		met = num(judged) && judged > 0 ? (judged >= target(w) ? "yes" : "no") : "–"
		printf "| %s | %s | %s | %s | %s | %s | ≥ %.1fx | %s | %s / %s |\n", w,
			fmt(get("native", w, "pages_per_s"), "k"), fmt(get("kernel", w, "pages_per_s"), "k"),
			fmt(get("memext", w, "pages_per_s"), "k"), pm != "" ? r : "**" r "**",
			pm != "" ? sprintf("**%.2fx**", pm) : "–", target(w), met,
			fmt(get("kernel", w, "fault_pct"), 1), fmt(get("memext", w, "fault_pct"), 1)
	}
	if (("seq") in seen)
		printf "| fill (first write of the footprint, in order) | %s | %s | %s | **%s** | | | | |\n",
			fmt(get("native", "seq", "fill_pages_per_s"), "k"),
			fmt(get("kernel", "seq", "fill_pages_per_s"), "k"),
			fmt(get("memext", "seq", "fill_pages_per_s"), "k"),
			ratio(get("memext", "seq", "fill_pages_per_s"), get("kernel", "seq", "fill_pages_per_s"))
	if (("zipf") in seen)
		printf "\nZipf refaults once warm (target < 5%% of touches): kernel %s%%, memext %s%%.\n",
			fmt(get("kernel", "zipf", "fault_pct"), 2), fmt(get("memext", "zipf", "fault_pct"), 2)
	round_ratios()

	for (i = 1; i <= nwl; i++) {
		w = wl[i]
		printf "\n#### %s: %s, %s touches\n\n", w, describe(w), get("kernel", w, "touches")
		print "| config | pages/s | faults % | fault p50 µs | fault p99 µs | CPU s app + helper | CPU µs / touch |"
		print "|---|---:|---:|---:|---:|---:|---:|"
		row("native", w, "native")
		row("kernel", w, "kernel zram")
		row("memext", w, "memext")
		printf "| memext / kernel | %s | | %s | %s | %s | |\n",
			ratio(get("memext", w, "pages_per_s"), get("kernel", w, "pages_per_s")),
			ratio(get("memext", w, "fault_p50_us"), get("kernel", w, "fault_p50_us")),
			ratio(get("memext", w, "fault_p99_us"), get("kernel", w, "fault_p99_us")),
			ratio(cpu("memext", w), cpu("kernel", w))
		printf "\nkernel: %s swap-ins, %s swap-outs, %s major faults; CPU: all in the workload (%s s user, %s s system).  \n",
			get("kernel", w, "vm_pswpin"), get("kernel", w, "vm_pswpout"), get("kernel", w, "majflt"),
			fmt(get("kernel", w, "cpu_user_s"), 2), fmt(get("kernel", w, "cpu_sys_s"), 2)
		printf "memext: %s faults (%s zero), %s parked, %s swap-ins, %s swap-outs, %s move failures; %s uffd reads waited %s ms for the agent's move gate, %s put off; the daemon's own fault time p50 / p99 %s / %s µs; CPU: workload threads %s s, shim agent %s s, memextd threads by age %s s.  \n",
			get("memext", w, "d_faults"), get("memext", w, "d_zero_faults"), get("memext", w, "d_parked_faults"),
			get("memext", w, "d_pswpin"), get("memext", w, "d_pswpout"), get("memext", w, "d_move_failed"),
			get("memext", w, "d_gate_waits"), fmt(get("memext", w, "d_gate_wait_usec") / 1000, 1), get("memext", w, "d_gate_deferred"),
			get("memext", w, "fault_usec_p50"), get("memext", w, "fault_usec_p99"),
			fmt(get("memext", w, "workers_cpu_s"), 2), thread_cpu(get("memext", w, "self_threads_cpu"), "memext-agent"),
			thread_cpu(get("memext", w, "helper_threads_cpu"), "")
		printf "Load average before the native / kernel / memext runs: %s / %s / %s; the hypervisor took %s / %s / %s%% of the vCPUs' time during them.\n",
			get("native", w, "load1"), get("kernel", w, "load1"), get("memext", w, "load1"),
			fmt(steal_pct(get("native", w, "steal_s"), get("native", w, "wall_s")), 1),
			fmt(steal_pct(get("kernel", w, "steal_s"), get("kernel", w, "wall_s")), 1),
			fmt(steal_pct(get("memext", w, "steal_s"), get("memext", w, "wall_s")), 1)
	}

	if (nnp) {
		printf "\n### No pressure: budget %s above the footprint %s\n\n", mib(budget ? footprint * 2 : 0), mib(footprint)
		printf "Wall time of the whole process (start, fill, touches, final check, exit), no mincore(); median of %d runs (range).\n", get("native-nopressure", np[1], "runs")
		print "With more than one repetition, the target is judged on the median of the repetitions' own"
		print "memext / native ratios, as under pressure.\n"
		print "Target: memext ≤ 1.05x native.\n"
		print "| workload | native s | kernel (limit 2x) s | memext s | memext / native, medians | by repetition, median | met | fill s native / memext | fill minor faults native / memext | memext faults in fill (zero) |"
		print "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
		for (i = 1; i <= nnp; i++) {
			w = np[i]
			n = get("native-nopressure", w, "ext_wall_s"); m = get("memext-nopressure", w, "ext_wall_s")
			r = ratio(m, n)
			pm = paired_median(w "-nopressure")
			judged = pm != "" ? pm : r + 0
			printf "| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s (%s) |\n", w, fmt(n, 2) rg("native-nopressure", w),
				fmt(get("kernel-nopressure", w, "ext_wall_s"), 2) rg("kernel-nopressure", w), fmt(m, 2) rg("memext-nopressure", w),
				pm != "" ? r : "**" r "**", pm != "" ? sprintf("**%.2fx**", pm) : "–",
				(num(judged) && judged > 0 ? (judged <= 1.05 ? "yes" : "no") : "–"),
				fmt(get("native-nopressure", w, "fill_s"), 2), fmt(get("memext-nopressure", w, "fill_s"), 2),
				get("native-nopressure", w, "fill_minflt"), get("memext-nopressure", w, "fill_minflt"),
				get("memext-nopressure", w, "fill_faults"), get("memext-nopressure", w, "fill_zero_faults")
		}
		for (i = 1; i <= nnp; i++) {
			w = np[i]; id = w "-nopressure"
			if (PR[id, "n"])
				printf "%s- %s, memext / native of each repetition (steal %% native / memext):%s; median %.2fx%s\n",
					i == 1 ? "\n" : "", w, PR[id, "list"], paired_median(id),
					PQ[id, "n"] ? sprintf(", on a quiet host %.2fx (%d of %d)", median_of(PQ, id, PQ[id, "n"]), PQ[id, "n"], PR[id, "n"]) : ""
		}
	}
	bad = 0; failed = 0
	for (k in R) {
		split(k, kp, SUBSEP)
		if (kp[2] == "bad" && R[k] != 0) bad++
		if (kp[2] == "failed") failed++
	}
	printf "\nContent check: %s\n", bad ? "**" bad " runs found wrong pages**" : "every page touched (and in the first run of each, every page at the end) held what it must (bad = 0 in every run that finished)."
	if (failed) printf "\n**%d runs failed** (run.sh printed why; their figures are left out).\n", failed
}
