#!/usr/bin/env python3
"""Many short-lived clients, as a shell or a build under the shim makes them, and an idle daemon.

1. memextd without clients sleeps: its threads wake at most IDLE_WAKEUPS_PER_S times a second
   together (150 times a second before: a 10 ms timer, a 20 ms reclaim poll of
   /proc/meminfo and PSI).
2. A bash loop under the shim runs ROUNDS programs: every fork child and every program it
   executes is a client (totals.clients_seen counts them). None of them evicts anything, so
   none of them may put a line in memextd's log at its default level (it wrote five lines per
   command before: connected, shares 0 pages, connected again, replaced, exited).
3. A client that does evict pages (wl-random over its budget) still gets its exit line, with
   its counts, and its pages are verified by the workload. Its resident size stays bounded
   although it came to an idle daemon.
4. With every client gone, memextd sleeps again as in 1.
Exit 77 when the kernel cannot run memext (uffd-probe).
"""
import os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from memexttest import TestFailure, log, read_rss_anon, run_with_daemon, wait_for  # noqa: E402

memextd, memextctl, shim, probe, workload = sys.argv[1:6]
ROUNDS = 100
IDLE_SECONDS = 3
# Wake-ups are counted by the kernel (context switches), not timed: a busy machine does not
# add timer ticks. Idle, the daemon's main thread ticks once a second and its reclaim thread
# waits a second at a time: ~2 a second, and a margin.
IDLE_WAKEUPS_PER_S = 10
# wl-random's peak RssAnon at a 32 MiB budget, as harness.py bounds it.
RSS_BOUND = 32 * 2**20 * 5 // 4 + 16 * 2**20


def context_switches(pid):
    """Voluntary and involuntary context switches of all threads of pid."""
    n = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(line.split()[1])
        except OSError:
            pass
    return n


def check_idle(daemon, when):
    pid = daemon.proc.pid
    before = context_switches(pid)
    time.sleep(IDLE_SECONDS)
    woke = context_switches(pid) - before
    log(f"{when}: memextd's threads woke {woke} times in {IDLE_SECONDS} s")
    if woke > IDLE_WAKEUPS_PER_S * IDLE_SECONDS:
        raise TestFailure(f"{when}: memextd woke {woke} times in {IDLE_SECONDS} s with no "
                          f"client (at most {IDLE_WAKEUPS_PER_S * IDLE_SECONDS})")


def client_env(daemon, budget):
    env = dict(os.environ, LD_PRELOAD=shim, MEMEXT_SOCKET=daemon.sock, MEMEXT_BUDGET=budget)
    env.pop("MEMEXT_DEBUG", None)
    return env


def run_short_clients(daemon):
    seen = daemon.totals(daemon.stats())["clients_seen"]
    loop = f"i=0; while [ $i -lt {ROUNDS} ]; do /bin/true; i=$((i + 1)); done"
    r = subprocess.run(["/bin/bash", "-c", loop], env=client_env(daemon, "64M"), timeout=300)
    if r.returncode != 0:
        raise TestFailure(f"the shell loop exited {r.returncode}")
    wait_for(lambda: not daemon.stats()["clients"], 30, "the clients to leave")
    seen = daemon.totals(daemon.stats())["clients_seen"] - seen
    log(f"{ROUNDS} commands: {seen} clients")
    # bash forks (dash would vfork): each fork child is a client, and again once it executes
    # /bin/true.
    if seen < 2 * ROUNDS:
        raise TestFailure(f"{ROUNDS} commands under the shim made {seen} clients (expected at "
                          f"least {2 * ROUNDS}): the test tests nothing")
    lines = [l for l in daemon.log_text().splitlines() if "client " in l]
    if lines:
        raise TestFailure(f"clients that evicted nothing put {len(lines)} lines in the log, "
                          f"the first: {lines[0]!r}")


def run_evicting_client(daemon):
    # It comes to a daemon that was idle (its timer ticking once a second) and fills 128 MiB
    # in well under a second: bounded all the same, as in every integration test (budget *
    # 1.25 + 16 MiB). Its hello brings the 10 ms tick back at once, but the bound holds even
    # without that: the shim registers a mapping over the budget itself, and its faults arm it.
    with tempfile.TemporaryFile("w+") as out:
        p = subprocess.Popen([workload, "128M", "1", "8000"], env=client_env(daemon, "32M"),
                             stdout=out, stderr=subprocess.STDOUT)
        peak = 0
        while p.poll() is None:
            peak = max(peak, read_rss_anon(p.pid) or 0)
            time.sleep(0.02)
        if p.returncode != 0:
            out.seek(0)
            raise TestFailure(f"wl-random exited {p.returncode}: {out.read()[-2000:]}")
    log(f"wl-random: peak RssAnon {peak / 2**20:.1f} MiB")
    if peak > RSS_BOUND:
        raise TestFailure(f"wl-random's RssAnon reached {peak / 2**20:.1f} MiB, over "
                          f"{RSS_BOUND / 2**20:.0f} MiB: memextd did not watch it in time")
    wait_for(lambda: not daemon.stats()["clients"], 30, "wl-random to leave")
    lines = [l for l in daemon.log_text().splitlines() if "(wl-random) exited:" in l]
    if len(lines) != 1 or " 0 pages evicted" in lines[0]:
        raise TestFailure(f"expected one exit line with its evictions for wl-random, found "
                          f"{lines!r}")
    log(f"wl-random: {lines[0].strip()}")


def short_clients(daemon):
    daemon.stats()  # up and answering
    check_idle(daemon, "before any client")
    run_short_clients(daemon)
    run_evicting_client(daemon)
    check_idle(daemon, "after the clients")


if __name__ == "__main__":
    sys.exit(run_with_daemon(memextd, memextctl, probe, "memext-short-", short_clients))
