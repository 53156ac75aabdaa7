# SPDX-License-Identifier: MIT
"""What the integration harness and the end-to-end tests share (python3, stdlib only).

A real memextd on sockets in a temp dir (Daemon: start, stats, a SIGKILL and a new daemon on
the same sockets, stop), the check that a restarted daemon adopted its clients and lost no
page (adoption_problems), and small helpers: sizes, logging, /proc readers, polling.
Importers put this folder on sys.path themselves, relative to their own file, so the tests
run from the source tree as meson registers them.
"""

import json
import os
import re
import signal
import stat
import subprocess
import tempfile
import time

PAGE = 4096
MiB = 1 << 20
SKIP = 77


class TestFailure(Exception):
    pass


_T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - _T0:6.1f}s] {msg}", flush=True)


def mib(n):
    return f"{n / MiB:.1f} MiB"


def parse_size(s):
    """'64M', '256MiB', '4096' -> bytes."""
    m = re.fullmatch(r"(\d+)([KMG]?)(i?B)?", str(s).strip(), re.I)
    if not m:
        raise ValueError(f"bad size {s!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2).upper()]


def tail(path, lines=40):
    """The last lines of a file (a log), or why it cannot be read."""
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})"


def read_rss_anon(pid):
    """RssAnon of pid in bytes, or None if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def descendants(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                continue
            for k in kids:
                if k not in out:
                    out.append(k)
                    todo.append(k)
    return out


def is_socket(path):
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def wait_for(cond, timeout, what, interval=0.05, alive=None):
    """Polls cond() until true; TestFailure after timeout s (a hang guard)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise TestFailure(f"{what}: not done after {timeout} s (hang guard)")
        time.sleep(interval)


def missing_path(args, names):
    """'WHAT not found at PATH' for the first attribute of args in names whose path does not
    exist, or None."""
    for what in names:
        p = getattr(args, what)
        if not os.path.exists(p):
            return f"{what} not found at {p}"
    return None


def raise_on_signals(*signums):
    """Turns these signals into a TestFailure in the main thread, so that the cleanup runs
    (meson's timeout sends SIGTERM)."""
    def on_signal(signum, frame):
        raise TestFailure(f"got signal {signum} (meson's timeout?)")
    for n in signums:
        signal.signal(n, on_signal)


# what note_clients() keeps the maximum of, per client
CLIENT_MAXIMA = ("resident_pages", "evicted_pages", "pswpin", "pswpout", "faults", "move_failed",
                 "agent_faults", "agent_unshare_faults", "gate_waits", "gate_wait_usec",
                 "gate_deferred")


def note_clients(seen, s):
    """Adds what the stats s say about each client to seen: pid -> {"budget_bytes": the set
    of budgets reported, "comm": its name, and the maximum of each CLIENT_MAXIMA field}."""
    for c in s["clients"]:
        e = seen.setdefault(c.get("pid"), {"budget_bytes": set(), "comm": c.get("comm")})
        e["budget_bytes"].add(c.get("budget_bytes"))
        e.setdefault("states", set()).add(c.get("state"))
        for k in CLIENT_MAXIMA:
            if isinstance(c.get(k), int):
                e[k] = max(e.get(k, 0), c[k])


def agent_faults_problem(who, agent_faults):
    """The failure to report when the stats give who (e.g. "client 123") agent_faults that are
    not 0, else None: the shim's agent must never fault, or it hangs if the daemon dies."""
    if agent_faults == 0:
        return None
    return (f"{who}: agent_faults {agent_faults} in the stats: the shim's agent touched "
            f"registered memory (it would hang had the daemon died)")


class Daemon:
    """memextd with both sockets and its log (memextd.log) in tmp.

    make_swapfile: make a swap area of that size in tmp (memextctl mkswap) and pass it with
    --swap-file; system_available_pct: run it with a stand-in /proc/meminfo (and so no PSI)
    whose MemAvailable is that percent of MemTotal; crash_at: the first daemon gets
    --crash-at POINT (it kills itself there). crash_restart() SIGKILLs it and starts a new one
    on the same sockets with the same arguments (and restart_args after them), adding the dead
    daemon's totals to `carried`; totals(s) gives the totals of s plus those."""

    def __init__(self, memextd, memextctl, tmp, extra_args=(), make_swapfile=None,
                 system_available_pct=None, crash_at=None, stop_timeout=30, restart_args=()):
        self.sock = os.path.join(tmp, "memextd.sock")
        self.stats_sock = os.path.join(tmp, "stats.sock")
        self.log_path = os.path.join(tmp, "memextd.log")
        self.swap_path = os.path.join(tmp, "swap")
        self.meminfo_path = os.path.join(tmp, "meminfo")
        self.memextd = memextd
        self.memextctl = memextctl
        self.extra_args = list(extra_args)
        self.restart_args = list(restart_args)
        self.make_swapfile = make_swapfile
        self.system_available_pct = system_available_pct
        self.crash_at = crash_at
        self.stop_timeout = stop_timeout
        self.proc = None
        self.log_file = None
        self.stop_status = None
        self.carried = {}   # totals of daemons killed by crash_restart(), summed
        self.restarts = 0

    def set_available_pct(self, pct):
        """The stand-in /proc/meminfo now says pct of MemTotal is available (memextd reads it
        every reclaim round)."""
        total_kib = 16 * 1024 * 1024
        tmp = self.meminfo_path + ".new"
        with open(tmp, "w") as f:
            f.write(f"MemTotal:       {total_kib} kB\nMemFree:        0 kB\n"
                    f"MemAvailable:   {total_kib * pct // 100} kB\n")
        os.rename(tmp, self.meminfo_path)

    def start(self, timeout=20, append_log=False):
        if self.make_swapfile and not append_log:
            mk = [self.memextctl, "mkswap", self.swap_path, "--size", self.make_swapfile]
            r = subprocess.run(mk, capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                raise TestFailure(f"'{' '.join(mk)}' exited {r.returncode}: "
                                  f"{(r.stdout + r.stderr).strip()}")
            log(f"{' '.join(mk)}: {r.stdout.strip()}")
        self.log_file = open(self.log_path, "ab" if append_log else "wb")
        cmd = [self.memextd, "--socket", self.sock, "--stats-socket", self.stats_sock]
        if self.system_available_pct is not None:
            # A stand-in for /proc/meminfo (and so no PSI): the system short of memory, or
            # not, whatever this machine has and whatever else runs on it.
            self.set_available_pct(self.system_available_pct)
            cmd += ["--meminfo", self.meminfo_path]
        if self.make_swapfile:
            cmd += ["--swap-file", self.swap_path]
        if self.crash_at and self.restarts == 0:
            cmd += ["--crash-at", self.crash_at]
        cmd += self.extra_args
        if self.restarts > 0:
            cmd += self.restart_args
        log("starting: " + " ".join(cmd))
        # Its log goes to a file: not in the journal's "<N>" form, even when the test runs
        # under a systemd service (which sets JOURNAL_STREAM for its own stderr).
        env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise TestFailure(f"memextd exited with {self.proc.returncode} before creating "
                                  f"its sockets; its log:\n{tail(self.log_path)}")
            if all(is_socket(p) for p in (self.sock, self.stats_sock)):
                return
            if time.monotonic() > deadline:
                raise TestFailure(f"memextd did not create {self.sock} and {self.stats_sock} "
                                  f"within {timeout} s; its log:\n{tail(self.log_path)}")
            time.sleep(0.02)

    def start_again(self, timeout=20):
        """A new daemon on the same sockets, once this one is dead."""
        self.proc.wait()
        self.log_file.close()
        # A killed daemon leaves its socket files: the new one binds anew.
        for p in (self.sock, self.stats_sock):
            if os.path.exists(p):
                os.unlink(p)
        self.restarts += 1
        self.start(timeout, append_log=True)

    def crash_restart(self, timeout=20):
        """SIGKILL the daemon and start a new one on the same sockets (the crash tests).
        Returns the dead daemon's last stats."""
        s = self.stats()
        for k, v in s["totals"].items():
            if isinstance(v, int):
                self.carried[k] = self.carried.get(k, 0) + v
        log(f"SIGKILL memextd {self.proc.pid} with {s['store']['stored_pages']} pages "
            f"stored")
        self.proc.kill()
        self.start_again(timeout)
        return s

    def totals(self, s):
        """The totals of the stats s plus those of the daemons crash_restart() killed."""
        t = dict(s["totals"])
        for k, v in self.carried.items():
            t[k] = t.get(k, 0) + v
        return t

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self, when=""):
        """TestFailure unless memextd runs; when: what was going on, for the message."""
        if self.alive():
            return
        hint = ""
        if self.proc.returncode in (0, -signal.SIGTERM):
            hint = (" -- it was stopped by a SIGTERM/SIGINT this test did not send (another "
                    "process's pkill/killall of memextd?)")
        raise TestFailure(f"memextd died (exit {self.proc.returncode}){when}{hint}; its log:\n"
                          f"{tail(self.log_path)}")

    def log_text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stats(self, timeout=20):
        cmd = [self.memextctl, "--stats-socket", self.stats_sock, "stats", "--json"]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"'{' '.join(cmd)}' hung for {timeout} s")
        if r.returncode != 0:
            state = ("still running" if self.alive() else
                     f"exited with {self.proc.returncode}")
            raise TestFailure(f"'{' '.join(cmd)}' exited {r.returncode}: {r.stderr.strip()}\n"
                              f"(memextd is {state}; sockets now: "
                              f"{sorted(os.listdir(os.path.dirname(self.stats_sock)))}); "
                              f"memextd log:\n{tail(self.log_path)}")
        try:
            s = json.loads(r.stdout)
        except ValueError as e:
            raise TestFailure(f"memextctl stats --json printed invalid JSON ({e}):\n{r.stdout}")
        for key, fields in (("totals", ("pswpin", "pswpout", "faults", "clients_seen")),
                            ("store", ("orig_data_size", "compr_data_size",
                                       "mem_used_total", "stored_pages"))):
            if not isinstance(s.get(key), dict) or any(f not in s[key] for f in fields):
                raise TestFailure(f"memextctl stats --json: '{key}' lacks one of {fields}:\n"
                                  f"{r.stdout}")
        if not isinstance(s.get("clients"), list):
            raise TestFailure(f"memextctl stats --json: no 'clients' array:\n{r.stdout}")
        return s

    def stop(self, timeout=None):
        """SIGTERM, SIGKILL after timeout s (default stop_timeout). Returns the exit status
        (None if never run)."""
        if self.proc is None:
            return None
        if self.stop_status is not None:
            return self.stop_status
        timeout = self.stop_timeout if timeout is None else timeout
        rc = self.proc.poll()
        if rc is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"memextd ignored SIGTERM for {timeout} s: SIGKILL")
                self.proc.kill()
                self.proc.wait()
                rc = f"hung (killed after {timeout} s)"
        else:
            rc = f"{rc} (it had exited before the SIGTERM)"
        self.stop_status = rc
        self.log_file.close()
        return rc


def adoption_problems(daemon, pids, after, min_adopt_swap_pages=0):
    """After crash_restart(): the new daemon adopted every client in pids with its evicted
    pages and lost none. Returns a list of problems (empty: all is well).

    `after` is the new daemon's stats: its totals.adopt_poisoned (pages found nowhere and
    poisoned) must be 0, and totals.adopt_swap_pages (pages adopted in place in a swap area)
    at least min_adopt_swap_pages. The log must show "client PID (COMM) adopted: N evicted
    pages restored in T ms" with N > 0 for each pid, and never "could not be recovered"."""
    text = daemon.log_text()
    problems = []
    if daemon.restarts != 1:
        problems.append(f"memextd was killed and restarted {daemon.restarts} times, expected "
                        f"once (the test never reached the point where it kills it?)")
    for pid in pids:
        m = re.search(rf"client {pid} \(.*\) adopted: (\d+) evicted pages restored "
                      rf"in ([0-9.]+) ms", text)
        if not m:
            problems.append(f"the restarted memextd did not adopt client {pid}")
        elif int(m.group(1)) == 0:
            problems.append(f"client {pid} had no evicted page when memextd was killed")
        else:
            log(f"client {pid}: {m.group(1)} evicted pages adopted in {m.group(2)} ms "
                f"(time from the new daemon's hello to service)")
    if "could not be recovered" in text:
        problems.append("the restarted memextd lost pages (see 'could not be recovered')")
    poisoned = after["totals"].get("adopt_poisoned")
    in_place = after["totals"].get("adopt_swap_pages")
    log(f"restarted memextd: totals.adopt_poisoned {poisoned}, totals.adopt_swap_pages "
        f"{in_place} (min {min_adopt_swap_pages})")
    if poisoned != 0:
        problems.append(f"totals.adopt_poisoned is {poisoned}, expected 0: pages were poisoned")
    if not isinstance(in_place, int) or in_place < min_adopt_swap_pages:
        problems.append(f"totals.adopt_swap_pages is {in_place}, expected at least "
                        f"{min_adopt_swap_pages}: the pages in the swap area were not "
                        f"adopted in place")
    return problems


def run_with_daemon(memextd, memextctl, probe, prefix, body, extra_args=()):
    """A script test's frame: 77 when the kernel cannot run memext (probe), else one memextd
    in a temp dir, body(daemon), the daemon alive after it and its clean stop. Returns the
    exit status and prints PASS, or FAIL with the reason and the daemon's log."""
    if subprocess.run([probe], capture_output=True).returncode == SKIP:
        print("SKIP: the kernel cannot run memext")
        return SKIP
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        daemon = Daemon(memextd, memextctl, tmp, extra_args=extra_args)
        daemon.start()
        try:
            body(daemon)
            daemon.check_alive("at the end")
        except TestFailure as e:
            print(f"FAIL: {e}\nmemextd's log:\n{daemon.log_text()[-4000:]}")
            daemon.stop()
            return 1
        rc = daemon.stop()
        if rc != 0:
            print(f"FAIL: memextd's stop: {rc}\nits log:\n{daemon.log_text()[-4000:]}")
            return 1
    print("PASS")
    return 0
