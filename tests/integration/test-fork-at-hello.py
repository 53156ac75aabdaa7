#!/usr/bin/env python3
"""A new process that forks at once, while reclaim is in the middle of a round.

Reclaim serves a fork that waits (FORK_PREPARE) from its round's snapshot of the clients. A new
process (a shell) says hello and forks before the round's first look: that look cannot find
it, the next round must. The flag that said "a fork waits" was cleared by that first look and
the next round never looked: the shell hung in fork() until some other process forked
(seen once in a git script under load, 10 minutes). memextd's --test-reclaim-pause-ms widens
the window between a round's snapshot and its first look, so that nearly every hello and fork
falls in it.

1. A client stays connected all along (a shell's `sleep`), so that reclaim rounds go on.
2. ROUNDS times, bash under the shim starts a job in the background (bash forks for it) and
   waits for it: each must end, with status 0, within FORK_TIMEOUT seconds (it takes about
   two rounds now, under a second; without the fix the first one already hung).
3. memextd counted every process: each bash, its fork child and the program that child
   executes.
All of it with one reclaim thread, then with two (every thread looks for waiting forks; one
serves each). Checked against the old code by hand: it hung at the first shell.
Exit 77 when the kernel cannot run memext (uffd-probe).
"""
import os, subprocess, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from memexttest import TestFailure, log, run_with_daemon, wait_for  # noqa: E402

memextd, memextctl, shim, probe, workload = sys.argv[1:6]
ROUNDS = 8
PAUSE_MS = 300
# Generous: a hang is for ever, a served fork takes two reclaim rounds (~0.7 s here).
FORK_TIMEOUT = 30


def client_env(daemon):
    env = dict(os.environ, LD_PRELOAD=shim, MEMEXT_SOCKET=daemon.sock, MEMEXT_BUDGET="64M")
    env.pop("MEMEXT_DEBUG", None)
    return env


def forks_at_hello(daemon):
    keeper = subprocess.Popen(["/bin/sleep", "600"], env=client_env(daemon))
    try:
        wait_for(lambda: len(daemon.stats()["clients"]) >= 1, 30, "the first client")
        seen = daemon.totals(daemon.stats())["clients_seen"]
        for i in range(ROUNDS):
            try:
                r = subprocess.run(["/bin/bash", "-c", "/bin/true & wait $!"],
                                   env=client_env(daemon), timeout=FORK_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise TestFailure(f"round {i}: bash's fork under the shim did not return in "
                                  f"{FORK_TIMEOUT} s: its FORK_PREPARE was never served")
            if r.returncode != 0:
                raise TestFailure(f"round {i}: bash exited {r.returncode}")
        seen = daemon.totals(daemon.stats())["clients_seen"] - seen
        log(f"{ROUNDS} shells that fork at once: {seen} clients")
        if seen < 3 * ROUNDS:
            raise TestFailure(f"{ROUNDS} shells made {seen} clients, expected at least "
                              f"{3 * ROUNDS} (bash, its fork child, /bin/true): the test "
                              f"tests nothing")
    finally:
        keeper.kill()
        keeper.wait()
    wait_for(lambda: not daemon.stats()["clients"], 30, "the clients to leave")


def main():
    for threads in (1, 2):
        log(f"memextd with {threads} reclaim thread(s)")
        rc = run_with_daemon(memextd, memextctl, probe, "memext-forkhello-", forks_at_hello,
                             ["--test-reclaim-pause-ms", str(PAUSE_MS),
                              f"--reclaim-threads={threads}"])
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
