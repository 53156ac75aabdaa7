#!/usr/bin/env python3
"""A fork child held stopped before it claims the evicted pages it shares with its parent.

A debugger that follows forks (gdb's detach-on-fork off) or a Ctrl-Z at the wrong moment holds
the child at fork(); the shim stands in for that with MEMEXT_TEST_CHILD_STOPS_AT_FORK=1 (the
child stops itself in its atfork handler, before its hello). memextd runs with
fork-claim-timeout-sec = 1.

1. wl-fork 128M at a 32 MiB budget: the parent fills, most of it is evicted, it forks and
   names the child to memextd. The child stays stopped for HOLD_SECONDS, many times the
   timeout: its snapshot must still wait (fork_snapshots 1), since the child lives. Then
   SIGCONT: the child claims its pages and both sides verify every byte (wl-fork exits 0).
   Before, the snapshot was dropped after the timeout and the child aborted ("would read as
   zeroes").
2. The same, but memextd is stopped (SIGTERM) while the child is held: the stop must not wait
   for the child for ever; memextd exits 0 once the timeout has passed. A new memextd is
   started, and the child, let go, finds its pages gone there and aborts rather than read
   zeroes (wl-fork fails; the shim says why).
3. With a swap area (--swap-file), memextd is killed (SIGKILL) while the child is held, and a
   new one started: it holds the swap slots the dead one's snapshot may name for the timeout
   only, so a child that comes later must be refused (its slots may have been given out
   since, to pages of others) and abort, rather than read them.
4. The same with the pool+swapfile backend and room in the pool, so that every shared page is
   in the pool (in pmem, which the child holds): the late child is served all the same, and
   wl-fork checks every byte.
Exit 77 when the kernel cannot run memext (uffd-probe).
"""
import os, signal, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from memexttest import Daemon, TestFailure, descendants, log, wait_for  # noqa: E402

memextd, memextctl, shim, probe, workload = sys.argv[1:6]
HOLD_SECONDS = 4


def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def start_fork(daemon, tmp, name):
    # MEMEXT_DEBUG: the shim says why a child aborts.
    env = dict(os.environ, LD_PRELOAD=shim, MEMEXT_SOCKET=daemon.sock, MEMEXT_BUDGET="32M",
               MEMEXT_TEST_CHILD_STOPS_AT_FORK="1", MEMEXT_DEBUG="1")
    out = open(os.path.join(tmp, name + ".out"), "w+")
    p = subprocess.Popen([workload, "128M"], env=env, stdout=out, stderr=subprocess.STDOUT)
    child = wait_for(lambda: next((k for k in descendants(p.pid) if state(k) == "T"), None),
                     120, "wl-fork's child to stop at fork",
                     alive=lambda: p.poll() is None or fail_early(p, out))
    log(f"{name}: wl-fork {p.pid} forked {child}, which is stopped")
    return p, out, child


def fail_early(p, out):
    out.seek(0)
    raise TestFailure(f"wl-fork exited {p.returncode} before its child stopped:\n"
                      f"{out.read()[-2000:]}")


def snapshots(daemon):
    return daemon.stats()["totals"]["fork_snapshots"]


def held_child_claims_late(daemon, tmp):
    p, out, child = start_fork(daemon, tmp, "held")
    time.sleep(HOLD_SECONDS)
    n = snapshots(daemon)
    log(f"after {HOLD_SECONDS} s held (timeout 1 s): {n} fork snapshot(s) wait")
    if n != 1:
        raise TestFailure(f"{n} fork snapshots wait for the held child (expected 1): "
                          f"dropped although the child lives")
    os.kill(child, signal.SIGCONT)
    rc = p.wait(240)
    out.seek(0)
    text = out.read()
    if rc != 0:
        raise TestFailure(f"wl-fork exited {rc} after its child was let go:\n{text[-3000:]}")
    wait_for(lambda: snapshots(daemon) == 0, 30, "the snapshot to be claimed")
    log("held: the child claimed its pages; both sides verified every byte")


def expect_child_aborted(p, out, why):
    rc = p.wait(240)
    out.seek(0)
    text = out.read()
    # The child must stop itself (SIGABRT), never run on with zeroes where the pages were.
    if rc == 0 or "would read as zeroes" not in text:
        raise TestFailure(f"the child let go {why} did not abort (wl-fork exited {rc}):\n"
                          f"{text[-3000:]}")


def slots_used(stats):
    return sum(a["used_slots"] for a in stats["swap_areas"])


def crash_then_late_child(daemon, tmp):
    p, out, child = start_fork(daemon, tmp, "crash")
    used = slots_used(daemon.crash_restart())
    if not used:
        raise TestFailure("no page went to the swap file: the test tests nothing")
    time.sleep(HOLD_SECONDS)
    os.kill(child, signal.SIGCONT)
    expect_child_aborted(p, out, "after the swap slots' hold lapsed")
    if "after the swap slots they may be in were held for it" not in daemon.log_text():
        raise TestFailure("the new memextd did not say why it refused the child")
    log("crash: the child that came after the new memextd's hold was refused and aborted")


def crash_then_late_child_pool(daemon, tmp):
    p, out, child = start_fork(daemon, tmp, "crash-pool")
    used = slots_used(daemon.crash_restart())
    if used:
        raise TestFailure(f"{used} pages went to the swap file: the test tests nothing")
    time.sleep(HOLD_SECONDS)
    os.kill(child, signal.SIGCONT)
    rc = p.wait(240)
    out.seek(0)
    text = out.read()
    if rc != 0:
        raise TestFailure(f"the late child whose pages were all in the pool was not served "
                          f"(wl-fork exited {rc}):\n{text[-3000:]}")
    log("crash-pool: the late child, its pages all in the pool, claimed them; every byte checked")


def stop_does_not_wait_for_ever(daemon, tmp):
    p, out, child = start_fork(daemon, tmp, "stop")
    start = time.monotonic()
    daemon.proc.send_signal(signal.SIGTERM)
    try:
        rc = daemon.proc.wait(60)
    except subprocess.TimeoutExpired:
        os.kill(child, signal.SIGKILL)
        raise TestFailure("memextd's stop waited 60 s for a child held at fork")
    log(f"stop: memextd exited {rc} after {time.monotonic() - start:.1f} s with the child held")
    if rc != 0:
        raise TestFailure(f"memextd exited {rc} on SIGTERM")
    # A child whose hello finds no daemon waits for the next one, which has no snapshot
    # either (the stop retired it from pmem too).
    daemon.start_again()
    os.kill(child, signal.SIGCONT)
    expect_child_aborted(p, out, "after memextd dropped its pages")
    log("stop: the child let go afterwards aborted, as it must")


def main():
    if subprocess.run([probe], capture_output=True).returncode == 77:
        print("SKIP: the kernel cannot run memext")
        return 77
    with tempfile.TemporaryDirectory(prefix="memext-forkheld-") as tmp:
        conf = os.path.join(tmp, "memextd.conf")
        with open(conf, "w") as f:
            f.write("[reclaim]\nfork-claim-timeout-sec = 1\n")
        daemon = Daemon(memextd, memextctl, tmp, extra_args=["--config", conf])
        swapped = Daemon(memextd, memextctl, os.path.join(tmp, "swap"),
                         extra_args=["--config", conf, "--store-backend=swapfile"],
                         make_swapfile="256M")
        pooled = Daemon(memextd, memextctl, os.path.join(tmp, "pool"),
                        extra_args=["--config", conf, "--store-backend=pool+swapfile"],
                        make_swapfile="256M")
        os.mkdir(os.path.join(tmp, "swap"))
        os.mkdir(os.path.join(tmp, "pool"))
        try:
            daemon.start()
            held_child_claims_late(daemon, tmp)
            daemon.check_alive(" after the held child")
            stop_does_not_wait_for_ever(daemon, tmp)
            swapped.start()
            crash_then_late_child(swapped, tmp)
            swapped.check_alive(" after the refused child")
            swapped.stop()
            pooled.start()
            crash_then_late_child_pool(pooled, tmp)
            pooled.check_alive(" after the late child")
        except TestFailure as e:
            for d in (daemon, swapped, pooled):
                if d.proc:
                    print(f"memextd's log ({d.log_path}):\n{d.log_text()[-4000:]}")
                    d.stop()
            print(f"FAIL: {e}")
            return 1
        daemon.stop()
        for d in (swapped, pooled):
            if d.stop() != 0:
                print(f"FAIL: a memextd with a swap area did not stop cleanly:\n"
                      f"{d.log_text()[-4000:]}")
                return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
