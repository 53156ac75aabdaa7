#!/usr/bin/env python3
"""memextd's stop with a client that holds evicted pages.

1. With too little memory for the evicted pages to come back (a stand-in /proc/meminfo, see
   memextd --meminfo), SIGTERM is refused: memextd stays up, says why, and keeps serving.
2. With room, SIGTERM gives every page back and memextd exits 0; the shim's threads in the
   client end, and the client (wl-random, waiting after its fill) runs on without memext and
   verifies every byte.
Exit 77 when the kernel cannot run memext (uffd-probe).
"""
import json, os, signal, subprocess, sys, tempfile, time

memextd, memextctl, shim, probe, workload = sys.argv[1:6]
TOTAL_KIB = 16 * 1024 * 1024


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def write_meminfo(path, available_pct):
    with open(path + ".new", "w") as f:
        f.write(f"MemTotal: {TOTAL_KIB} kB\nMemFree: 0 kB\n"
                f"MemAvailable: {TOTAL_KIB * available_pct // 100} kB\n")
    os.rename(path + ".new", path)


def stats(stats_sock):
    p = subprocess.run([memextctl, "--stats-socket", stats_sock, "stats", "--json"],
                       capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        fail(f"memextctl stats: {p.stderr}")
    return json.loads(p.stdout)


def wait_for(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    fail(f"timed out ({timeout} s) waiting for {what}")


def shim_threads(pid):
    """Names of the shim's threads (memext-agent, memext-watch) in process pid."""
    names = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/comm") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return sorted(n for n in names if n.startswith("memext-"))


def main():
    if subprocess.run([probe], capture_output=True).returncode == 77:
        print("SKIP: the kernel cannot run memext")
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix="memext-stop-") as tmp:
        sock, stats_sock = os.path.join(tmp, "d.sock"), os.path.join(tmp, "s.sock")
        meminfo, log_path = os.path.join(tmp, "meminfo"), os.path.join(tmp, "memextd.log")
        write_meminfo(meminfo, 50)
        log = open(log_path, "wb")
        d = subprocess.Popen([memextd, "--socket", sock, "--stats-socket", stats_sock,
                              "--meminfo", meminfo], stdout=log, stderr=subprocess.STDOUT)
        w = None
        try:
            wait_for(lambda: os.path.exists(stats_sock), 10, "memextd's sockets")
            env = dict(os.environ, LD_PRELOAD=shim, MEMEXT_SOCKET=sock, MEMEXT_BUDGET="32M")
            w = subprocess.Popen([workload, "128M", "2", "4000", "--wait-after-fill"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env)
            line = ""
            while "phase filled" not in line:
                line = w.stdout.readline()
                if not line:
                    fail(f"the workload ended before its fill: {w.stderr.read()}")
            wait_for(lambda: stats(stats_sock)["store"]["stored_pages"] > 8192, 30,
                     "pages evicted from the client")
            stored = stats(stats_sock)["store"]["stored_pages"]
            print(f"client {w.pid} filled; {stored} pages evicted")
            before = shim_threads(w.pid)
            if "memext-agent" not in before:
                fail(f"no memext-agent thread in the client: {before}")
            print(f"the shim's threads in the client: {', '.join(before)}")

            # 1% of 16 GiB available: less than the evicted pages need once above min.
            write_meminfo(meminfo, 1)
            d.send_signal(signal.SIGTERM)
            time.sleep(2)
            if d.poll() is not None:
                fail(f"memextd stopped (exit {d.returncode}) though the pages had no room")
            text = open(log_path, errors="replace").read()
            if "stop refused" not in text:
                fail(f"no 'stop refused' in memextd's log:\n{text[-2000:]}")
            # (short of memory, memextd may even evict more: never less)
            if stats(stats_sock)["store"]["stored_pages"] < stored:
                fail("the refused stop gave pages back")
            print("SIGTERM with no room: refused, memextd still serving")

            write_meminfo(meminfo, 50)
            d.send_signal(signal.SIGTERM)
            try:
                rc = d.wait(60)
            except subprocess.TimeoutExpired:
                fail("memextd did not stop within 60 s with room for the pages")
            if rc != 0:
                fail(f"memextd exited {rc} on the second SIGTERM")
            print("SIGTERM with room: every page given back, memextd exited 0")
            # Released for good: the agent and its watchdog end, nothing of memext runs on.
            wait_for(lambda: not shim_threads(w.pid), 10, "the shim's threads to end")
            print(f"the shim's threads ended: {', '.join(before)}")

            w.send_signal(signal.SIGUSR1)
            out, err = w.communicate(timeout=120)
            if w.returncode != 0:
                fail(f"the workload failed after the stop (exit {w.returncode}): {err[-1000:]}")
            if "all 32768 pages verified" not in err + out:
                fail(f"the workload did not verify its pages:\n{out}\n{err}")
            print("the workload ran on without memext and verified every page")
        finally:
            if w and w.poll() is None:
                w.kill()
            if d.poll() is None:
                d.kill()
            log.close()


main()
