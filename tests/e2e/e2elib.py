# SPDX-License-Identifier: MIT
"""End-to-end test library: a real memextd, a real application under libmemext.so.

One test script is one meson test. e2elib.run(name, body, ...) does the common part:
  1. installs the application's Debian packages when they are missing (apt-get, only the
     missing ones; exit 77 = skip when that fails),
  2. checks that the kernel gives memext what it needs (a userfaultfd that takes kernel-mode
     faults, UFFD_FEATURE_MOVE; exit 77 = skip otherwise),
  3. makes a temp dir, starts memextd with both sockets in it,
  4. calls body(ctx): the test starts its application under the shim with ctx.spawn(), drives
     it, checks its data, and calls ctx.check_memext() which asserts that memext did its job:
       - the daemon's cumulative totals.pswpout grew by at least (footprint - RSS bound) / 4 KiB
         pages, totals.pswpin by a fraction of that (pages were evicted and brought back);
         after ctx.kill_daemon() (SIGKILL, a new memextd on the same sockets) the killed
         daemon's totals count too;
       - the managed processes' RssAnon, sampled every 20 ms, stayed under
         budget * 1.25 + 16 MiB in every "bounded" phase (ctx.phase(name, bounded=False)
         opens one that is only reported);
       - the daemon listed the client with budget_bytes = MEMEXT_BUDGET;
       - after the application exited it left "clients" and store.stored_pages is 0;
       - memextd is alive and exits 0 on SIGTERM.
Every process the test started is killed and the temp dir removed, also on failure. Nothing
passes or fails on timing: timeouts only guard against hangs.
Exit status: 0 pass, 1 fail, 77 skip.
"""

import argparse
import fcntl
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from memexttest import (MiB, PAGE, SKIP, Daemon, TestFailure,  # noqa: E402,F401
                        adoption_problems, agent_faults_problem, descendants, is_socket, log, mib, missing_path,
                        note_clients, parse_size, raise_on_signals, read_rss_anon, tail,
                        wait_for)


class Skip(Exception):
    pass


# --------------------------------------------------------------------------- packages

def missing_packages(packages):
    missing = []
    for p in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                           text=True)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(p)
    return missing


def native_env():
    """This process's environment without the shim: for programs that must run natively."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def run_native(cmd, tmp, what, timeout=120):
    """Runs cmd without the shim (HOME and TMPDIR in tmp), to its end; returns the peak
    RssAnon of its own process, sampled every 20 ms. A non-zero exit or a run over timeout
    seconds is a TestFailure."""
    env = dict(native_env(), HOME=tmp, TMPDIR=tmp)
    p = subprocess.Popen(cmd, env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    peak = 0
    deadline = time.monotonic() + timeout
    while p.poll() is None:
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            raise TestFailure(f"native {what} ran over {timeout} s")
        peak = max(peak, read_rss_anon(p.pid) or 0)
        time.sleep(0.02)
    if p.returncode != 0:
        raise TestFailure(f"native {what} exited {p.returncode}")
    return peak


def ensure_packages(packages, binaries):
    """apt-get install the packages that are missing; Skip if that fails.

    Services are never started by this: on Debian the package's postinst asks invoke-rc.d,
    and the tests run their servers from the binaries with their own config in the temp dir,
    so a system service (if policy-rc.d lets one start) is neither needed nor touched.
    """
    missing = missing_packages(packages)
    if missing:
        log(f"installing missing packages: {' '.join(missing)}")
        env = dict(native_env(), DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + missing
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            log("apt-get install failed; running apt-get update once and retrying")
            u = subprocess.run(["apt-get", "update"], env=env, capture_output=True, text=True,
                               timeout=600)
            if u.returncode != 0:
                raise Skip(f"apt-get update failed ({u.returncode}): "
                           f"{(u.stderr or u.stdout).strip()[-500:]}")
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise Skip(f"cannot install {' '.join(missing)}: apt-get exited {r.returncode}: "
                       f"{(r.stderr or r.stdout).strip()[-500:]}")
        still = missing_packages(missing)
        if still:
            raise Skip(f"packages still missing after apt-get install: {' '.join(still)}")
    for b in binaries:
        if shutil.which(b) is None:
            raise Skip(f"{b} not found in PATH although its package is installed")


# --------------------------------------------------------------------------- uffd probe

USERFAULTFD_IOC_NEW = 0xAA00                      # _IO(0xAA, 0x00)
UFFDIO_API = 0xC018AA3F                           # _IOWR(0xAA, 0x3F, struct uffdio_api)
UFFD_API = 0xAA
UFFD_FEATURE_MOVE = 1 << 16
SYS_userfaultfd = 323                             # x86_64


def probe_uffd():
    """Skip unless this kernel gives a userfaultfd for kernel-mode faults with MOVE."""
    fd, why = -1, []
    try:
        dev = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
        try:
            fd = fcntl.ioctl(dev, USERFAULTFD_IOC_NEW, os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as e:
            why.append(f"USERFAULTFD_IOC_NEW: {e.strerror}")
        finally:
            os.close(dev)
    except OSError as e:
        why.append(f"/dev/userfaultfd: {e.strerror}")
    if fd < 0:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        fd = libc.syscall(SYS_userfaultfd, os.O_CLOEXEC | os.O_NONBLOCK)
        if fd < 0:
            why.append(f"userfaultfd(2): {os.strerror(ctypes.get_errno())}")
    if fd < 0:
        raise Skip("no userfaultfd for kernel-mode faults: " + "; ".join(why))
    try:
        buf = bytearray(struct.pack("QQQ", UFFD_API, 0, 0))
        try:
            fcntl.ioctl(fd, UFFDIO_API, buf, True)
        except OSError as e:
            raise Skip(f"UFFDIO_API failed: {e.strerror}")
        features = struct.unpack("QQQ", bytes(buf))[1]
    finally:
        os.close(fd)
    if not features & UFFD_FEATURE_MOVE:
        raise Skip(f"the kernel lacks UFFD_FEATURE_MOVE (Linux 6.8+); features {features:#x}")
    log(f"userfaultfd ok, features {features:#x}")


# --------------------------------------------------------------------------- processes

class App:
    """An application process (its own session), its output in a file in the temp dir."""

    def __init__(self, name, cmd, env, tmp, cwd=None):
        self.name = name
        self.cmd = cmd
        self.out_path = os.path.join(tmp, f"{name}.out")
        self.out = open(self.out_path, "wb")
        log(f"starting {name}: {' '.join(cmd)}")
        self.proc = subprocess.Popen(cmd, env=env, cwd=cwd or tmp, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise TestFailure(f"{self.name} (pid {self.pid}) died: {self.status()}; its "
                              f"output:\n{self.output()}")

    def status(self):
        rc = self.proc.poll()
        if rc is None:
            return "running"
        return f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"

    def output(self, lines=40):
        self.out.flush()
        return tail(self.out_path, lines)

    def text(self):
        self.out.flush()
        with open(self.out_path, errors="replace") as f:
            return f.read()

    def wait(self, timeout, what=None):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"{what or self.name} still running after {timeout} s "
                              f"(hang guard); its output:\n{self.output()}")

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        else:
            # its children (a fork of a server) may outlive it in the same process group
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.out.close()


class Sampler(threading.Thread):
    """RssAnon of the managed processes every 20 ms, and the daemon's view every 250 ms."""

    def __init__(self, ctx):
        super().__init__(daemon=True)
        self.ctx = ctx
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.phase = "start"
        self.bounded = True
        self.peaks = {}          # (pid, phase) -> peak RssAnon
        self.bounded_samples = {}  # pid -> list of (rss, phase) in bounded phases
        self.samples = 0
        self.seen = {}           # pid -> what the daemon said about it
        self.stats_errors = 0
        self.last_stats_error = None
        self.roots = []          # pids whose whole process tree is sampled
        self.bounded_pids = set()

    def set_phase(self, phase, bounded=True):
        with self.lock:
            self.phase, self.bounded = phase, bounded
        log(f"phase {phase}" + ("" if bounded else " (RSS not bounded)"))

    def add(self, pid, bounded=True):
        with self.lock:
            self.roots.append(pid)
            if bounded:
                self.bounded_pids.add(pid)

    def sample_once(self):
        with self.lock:
            phase, bounded, roots = self.phase, self.bounded, list(self.roots)
        for root in roots:
            for pid in [root] + descendants(root):
                rss = read_rss_anon(pid)
                if rss is None:
                    continue
                self.samples += 1
                key = (pid, phase)
                if rss > self.peaks.get(key, 0):
                    self.peaks[key] = rss
                if bounded and (pid in self.bounded_pids or self.ctx.bound_children):
                    self.bounded_samples.setdefault(pid, []).append((rss, phase))

    def poll_stats(self):
        try:
            s = self.ctx.daemon.stats(timeout=10)
        except TestFailure as e:
            self.stats_errors += 1
            self.last_stats_error = str(e)
            return
        note_clients(self.seen, s)

    def run(self):
        next_stats = 0
        while not self.stop_event.wait(0.02):
            self.sample_once()
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + 0.25
                self.poll_stats()

    def stop(self):
        self.stop_event.set()
        if self.is_alive():
            self.join(15)


class Ctx:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.budget = parse_size(args.budget)
        self.bound = int(self.budget * 1.25) + 16 * MiB
        self.daemon = Daemon(args.memextd, args.memextctl, tmp,
                             system_available_pct=args.system_available_pct)
        self.apps = []
        self.sampler = Sampler(self)
        self.base = None
        self.bound_children = False   # also bound the RSS of descendants (stress-ng workers)
        self.failures = []

    # the application ---------------------------------------------------------------
    def shim_env(self, extra=None, budget=None):
        env = dict(os.environ)
        env["LD_PRELOAD"] = self.args.shim
        env["MEMEXT_SOCKET"] = self.daemon.sock
        env["MEMEXT_BUDGET"] = budget or self.args.budget
        env["MEMEXT_DEBUG"] = "1"
        env["MALLOC_PERTURB_"] = "0"
        env["HOME"] = self.tmp
        env["TMPDIR"] = self.tmp
        if extra:
            env.update(extra)
        return env

    def spawn(self, name, cmd, env=None, managed=True, bounded=True, cwd=None):
        app = App(name, cmd, env if env is not None else self.shim_env(), self.tmp, cwd)
        self.apps.append(app)
        if managed:
            self.sampler.add(app.pid, bounded)
        return app

    def run_checking(self, name, cmd, what, checks, ok_re, timeout=300):
        """Runs an application that checks its own data, to its end: its output is logged; a
        non-zero exit (checks: what it checks, for the report) or no line matching ok_re is a
        failure. Returns its output."""
        app = self.spawn(name, cmd)
        rc = app.wait(timeout, what)
        out = app.text()
        for ln in out.splitlines():
            if not ln.startswith("memext:"):
                log("  | " + ln)
        if rc != 0:
            self.fail(f"{what} {app.status()} ({checks}):\n{app.output(20)}")
        elif not re.search(ok_re, out, re.M):
            self.fail(f"{what} exited 0 without a line matching /{ok_re}/")
        return out

    def phase(self, name, bounded=True):
        self.sampler.set_phase(name, bounded)

    def check_alive(self, *apps):
        self.daemon.check_alive()
        for a in apps:
            a.check_alive()

    def fail(self, msg):
        """Records a failure; the test goes on to report everything, then fails."""
        log("FAIL: " + msg)
        self.failures.append(msg)

    def rss(self, app):
        return read_rss_anon(app.pid)

    def totals(self):
        """The daemon's totals now, plus those of daemons killed by kill_daemon()."""
        return self.daemon.totals(self.daemon.stats())

    def kill_daemon(self):
        """SIGKILL memextd and start a new one on the same sockets with the same arguments
        (the crash test). Its totals are carried over into totals() and check_memext()."""
        s = self.daemon.crash_restart()
        log(f"memextd restarted on the same sockets; the killed one had "
            f"{len(s['clients'])} client(s): "
            + ", ".join(f"{c.get('pid')} ({c.get('comm')}, {c.get('evicted_pages')} evicted "
                        f"pages)" for c in s["clients"]))
        return s

    def check_adoption(self, pids):
        """After kill_daemon(): the new memextd adopted each process in pids with its evicted
        pages (N > 0 in its log), nothing was lost ("could not be recovered" never logged) and
        its totals.adopt_poisoned is 0."""
        for p in adoption_problems(self.daemon, pids, self.daemon.stats()):
            self.fail(p)

    def forked_pids(self, app):
        """The descendants of app that the sampler saw (its fork children)."""
        return sorted({pid for (pid, _phase) in self.sampler.peaks} - {app.pid})

    # the checks --------------------------------------------------------------------
    def check_memext(self, footprint, min_pswpin_frac=0.5, pids=None, clients=1,
                     allowed_over=0):
        """Asserts memext did its job for the applications started so far (all of them must
        have exited). footprint: the memory the application kept live at its peak.
        allowed_over: samples of a process that may exceed the bound, for a moment memext
        brings every page back on purpose (a clone() without fork()'s handlers)."""
        self.sampler.stop()
        args = self.args
        for a in self.apps:
            if a.alive():
                raise TestFailure(f"check_memext: {a.name} still running")
        min_out = max(1, (footprint - self.bound) // PAGE) * clients
        min_in = int(min_out * min_pswpin_frac)
        pids = set(pids or [])
        for a in self.apps:
            pids.add(a.pid)
        for (pid, _phase) in self.sampler.peaks:
            pids.add(pid)

        # every client left, the store is empty (hang guard for the daemon's cleanup)
        last = {}

        def gone():
            s = self.daemon.stats()
            last["s"] = s
            listed = [c for c in s["clients"] if c.get("pid") in pids]
            return not listed and s["store"]["stored_pages"] == 0
        try:
            wait_for(gone, 30, "the exited clients leaving the daemon with an empty store",
                     alive=self.daemon.check_alive)
        except TestFailure as e:
            self.fail(f"{e}; stats: {json.dumps(last.get('s'))}")
        if "s" not in last:
            last["s"] = self.daemon.stats()
        after = last["s"]
        now = self.daemon.totals(after)
        d = {k: now[k] - self.base["totals"][k]
             for k in ("pswpout", "pswpin", "faults", "clients_seen")}
        st = after["store"]
        log(f"daemon totals grew by: pswpout {d['pswpout']} pages (min {min_out}), pswpin "
            f"{d['pswpin']} (min {min_in}), faults {d['faults']}, clients_seen "
            f"{d['clients_seen']}; store max used {mib(st.get('mem_used_max', 0))}")

        # RSS
        by_pid = {}
        for (pid, phase), rss in self.sampler.peaks.items():
            by_pid.setdefault(pid, []).append((rss, phase))
        for pid, lst in sorted(by_pid.items()):
            rss, phase = max(lst)
            seen = self.sampler.seen.get(pid, {})
            log(f"process {pid} ({seen.get('comm', '?')}): peak RssAnon {mib(rss)} in phase "
                f"'{phase}'; daemon: budget {sorted(seen.get('budget_bytes', []), key=str)}, "
                f"max resident {seen.get('resident_pages')} pages, max evicted "
                f"{seen.get('evicted_pages')}, pswpout {seen.get('pswpout')}, pswpin "
                f"{seen.get('pswpin')}, move_failed {seen.get('move_failed')}, agent_faults "
                f"{seen.get('agent_faults')}")
            problem = agent_faults_problem(f"process {pid}", seen.get("agent_faults", 0))
            if problem:
                self.fail(problem)
        if self.sampler.samples == 0:
            self.fail("no RssAnon sample was taken")
        checked = 0
        for pid, samples in sorted(self.sampler.bounded_samples.items()):
            checked += 1
            rss, phase = max(samples)
            over = [s for s in samples if s[0] > self.bound]
            if over and len(over) <= allowed_over:
                log(f"process {pid}: {len(over)} of {len(samples)} samples over the bound "
                    f"{mib(self.bound)} (peak {mib(rss)}), within the {allowed_over} allowed")
            elif over:
                ordered = sorted(s[0] for s in samples)
                self.fail(f"process {pid}: peak RssAnon {mib(rss)} (phase '{phase}') exceeds "
                          f"the bound {mib(self.bound)} (budget {mib(self.budget)} * 1.25 + "
                          f"16 MiB) in {len(over)} of {len(samples)} samples (median "
                          f"{mib(ordered[len(ordered) // 2])}; phases over: "
                          f"{sorted(set(p for _, p in over))}): memext did not hold it near "
                          f"its budget")
        if checked == 0:
            self.fail("no RssAnon sample of a managed process in a bounded phase")
        for pid in self.sampler.bounded_pids:
            seen = self.sampler.seen.get(pid)
            if seen is None:
                log(f"(client {pid} was not caught by a stats sample)")
            elif seen["budget_bytes"] != {self.budget}:
                self.fail(f"client {pid}: budget_bytes {seen['budget_bytes']} in the stats, "
                          f"MEMEXT_BUDGET={args.budget} is {self.budget}")
        if self.sampler.stats_errors:
            log(f"({self.sampler.stats_errors} stats samples failed: "
                f"{self.sampler.last_stats_error})")
        if d["clients_seen"] < clients:
            self.fail(f"totals.clients_seen grew by {d['clients_seen']}: the shim did not "
                      f"register the application with the daemon")
        if d["pswpout"] < min_out:
            self.fail(f"totals.pswpout grew by only {d['pswpout']} pages, expected at least "
                      f"{min_out} ((footprint {mib(footprint)} - bound {mib(self.bound)}) / "
                      f"4 KiB): memext did not evict the memory beyond the budget")
        if d["pswpin"] < min_in:
            self.fail(f"totals.pswpin grew by only {d['pswpin']} pages, expected at least "
                      f"{min_in}: evicted pages were not brought back")
        return d


    def check_process_evicted(self, pid, footprint, who):
        """After check_memext(): process pid itself (one of many an application runs) had at
        least half of its footprint over the budget evicted and some brought back, as last
        seen in the stats (sampled every 0.25 s)."""
        seen = self.sampler.seen.get(pid, {})
        min_out = (footprint - self.budget) // PAGE // 2
        if seen.get("pswpout", 0) < min_out or not seen.get("pswpin"):
            self.fail(f"{who}: pswpout {seen.get('pswpout')} (want at least {min_out}: half "
                      f"its footprint over the budget), pswpin {seen.get('pswpin')} (want "
                      f"some)")


def run(name, body, packages=(), binaries=(), budget="64M", argv=None, add_args=None):
    """add_args(ap): the test's own options, on the argparse parser."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--memextd", required=True)
    ap.add_argument("--memextctl", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--budget", default=budget)
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiplies the data set (the overcommit stays ~4x the budget)")
    ap.add_argument("--keep-tmp", action="store_true", help="debugging: keep the temp dir")
    ap.add_argument("--system-available-pct", type=int, default=None, metavar="PCT",
                    help="run memextd with a stand-in /proc/meminfo (no PSI) whose "
                         "MemAvailable is PCT of MemTotal, which the test may change")
    if add_args is not None:
        add_args(ap)
    args, rest = ap.parse_known_args(argv)
    args.rest = rest

    missing = missing_path(args, ("memextd", "memextctl", "shim"))
    if missing:
        log(f"FAIL [{name}]: {missing}")
        return 1
    raise_on_signals(signal.SIGTERM, signal.SIGINT)

    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix=f"memext-e2e-{name}-")
    ctx = Ctx(args, tmp)
    rc = 0
    try:
        try:
            ensure_packages(packages, binaries)
            probe_uffd()
            ctx.daemon.start()
            ctx.base = ctx.daemon.stats()
            log(f"budget {mib(ctx.budget)}, RSS bound {mib(ctx.bound)}")
            ctx.sampler.start()
            body(ctx)
            ctx.daemon.check_alive()
        finally:
            ctx.sampler.stop()
            for a in ctx.apps:
                a.kill()
            st = ctx.daemon.stop()
        if st is not None and st != 0:
            ctx.fail(f"memextd exited {st} on SIGTERM (expected 0); its log:\n"
                     f"{tail(ctx.daemon.log_path)}")
        elif st == 0:
            log("memextd exited 0 on SIGTERM")
        if ctx.failures:
            raise TestFailure(f"{len(ctx.failures)} check(s) failed:\n" +
                              "\n".join("  - " + f for f in ctx.failures))
    except Skip as e:
        log(f"SKIP [{name}]: {e}")
        rc = SKIP
    except TestFailure as e:
        log(f"FAIL [{name}] after {time.monotonic() - t0:.1f} s: {e}")
        log(f"--- memextd log (last lines) ---\n{tail(ctx.daemon.log_path)}")
        rc = 1
    finally:
        if args.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if rc == 0:
        log(f"PASS [{name}] in {time.monotonic() - t0:.1f} s")
    return rc


# --------------------------------------------------------------------------- data

class Corpus:
    """Deterministic, compressible-but-not-trivial text: words from a seeded PRNG.

    value(i, gen, n) is a slice of the corpus at an offset that depends on (i, gen), after a
    header naming the item, so each 4 KiB page holds different text (lz4 ratio ~2-3, like
    real data), and a wrong value says what it is."""

    def __init__(self, seed=1, size=4 * MiB):
        rng = random.Random(seed)
        syl = ["ka", "ro", "mi", "tse", "lun", "dor", "ve", "shi", "pa", "gon", "el", "ur",
               "qui", "bax", "fen", "io", "zar", "wen", "th", "ick", "mo", "sa", "ne", "ly"]
        words = ["".join(rng.choice(syl) for _ in range(rng.randint(1, 4)))
                 for _ in range(3000)]
        parts, n = [], 0
        while n < size:
            w = rng.choice(words)
            if rng.random() < 0.08:
                w = w.capitalize() + rng.choice([",", ".", ";", ":", "!"])
            if rng.random() < 0.05:
                w += str(rng.randint(0, 99999))
            parts.append(w)
            n += len(w) + 1
        self.text = " ".join(parts).encode()[:size]
        self.size = len(self.text)

    def value(self, i, gen, n):
        h = b"<%d/%d>" % (i, gen)
        off = ((i * 2654435761) ^ (gen * 40503)) % (self.size - n - 1)
        return h + self.text[off:off + max(0, n - len(h))]


def item_len(i, lo, hi):
    """A deterministic, varied length in [lo, hi]."""
    x = (i * 0x9E3779B1 + 0x7F4A7C15) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x2C1B3C6D) & 0xFFFFFFFF
    x ^= x >> 12
    return lo + x % (hi - lo + 1)
