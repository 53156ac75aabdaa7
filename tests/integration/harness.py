#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Integration test harness: a real memextd, a real program under libmemext.so.

One invocation is one test. In the default mode ("managed") it
  1. runs the uffd probe (exit 77 = skip when the kernel lacks what memext needs),
  2. makes a temp dir, starts memextd with both sockets in it and waits for them,
  3. runs the workload (--clients N copies at once) under the shim with MEMEXT_BUDGET,
     sampling each workload process's RssAnon (and its children's) every 20 ms and the
     daemon's stats every 250 ms,
  4. asserts: every workload exits 0 (the workloads check every byte themselves); the
     daemon's cumulative totals grew by at least --min-pswpout evicted and --min-pswpin
     brought-back pages (default: footprint minus the RSS bound, i.e. what must have left
     memory if resident memory stayed under the bound); peak RssAnon stayed under
     budget * 1.25 + 16 MiB; the client was listed with the right budget while it ran (when
     a stats sample caught it); after it exited it left "clients", store.stored_pages is 0
     and store.mem_used_total is back to its value before the test; the daemon is still
     alive and exits 0 on SIGTERM.
With --make-swapfile SIZE, a swap area is made in the temp dir before memextd starts and
passed to it with --swap-file (removed with the temp dir).
The fail-open modes run the workload against no daemon ("no-daemon") or with a bad budget
("bad-budget") and assert that it runs unchanged and that MEMEXT_DEBUG=1 makes the shim say
why in a line starting with "memext:". "no-uffd" runs it as nobody, who may not make a
userfaultfd: unmanaged, and the daemon's log says why once per user.

The daemon and the workloads are always stopped and the temp dir removed, also on failure.
Nothing passes or fails on timing: the timeouts only guard against hangs.
Exit status: 0 pass, 1 fail, 77 skip.
"""

import argparse
import ctypes.util
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True      # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from memexttest import (MiB, PAGE, SKIP, Daemon, TestFailure, adoption_problems,  # noqa: E402
                        agent_faults_problem, descendants, log, mib, missing_path, note_clients, parse_size,
                        raise_on_signals, read_rss_anon, tail, wait_for)

class Timeout(Exception):
    pass


def config_file(args, tmp):
    """A memextd.conf in tmp with the --config-set keys; [] without them, else the memextd
    arguments that read it."""
    sections = {}
    for spec in args.config_set:
        key, _, value = spec.partition("=")
        section, _, name = key.partition(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    if not sections:
        return []
    path = os.path.join(tmp, "memextd.conf")
    with open(path, "w") as f:
        for section, lines in sections.items():
            f.write(f"[{section}]\n" + "".join(ln + "\n" for ln in lines))
    return ["--config", path]


def make_daemon(args, tmp):
    return Daemon(args.memextd, args.memextctl, tmp,
                  extra_args=config_file(args, tmp) + (args.daemon_arg or []),
                  make_swapfile=args.make_swapfile,
                  system_available_pct=args.system_available_pct,
                  crash_at=args.daemon_crashes_at, stop_timeout=15,
                  restart_args=args.restart_daemon_arg)


class Client:
    """One workload process (its own process group), its output and its RSS samples."""

    def __init__(self, idx, cmd, env, tmp=None):
        self.idx = idx
        # wl_phase() appends each phase here before printing it: a sample reads it after the
        # RSS, so a phase the workload began before the sample is never missed (stdout is
        # read by a thread, a little later).
        self.phase_file = os.path.join(tmp, f"phases-{idx}") if tmp else None
        if self.phase_file:
            env = dict(env, MEMEXT_WL_PHASE_FILE=self.phase_file)
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.phase = "start"
        self.phases = ["start"]
        self.out, self.err = [], []
        self.peak = {}           # pid -> (peak RssAnon, phase at the peak)
        self.peak_checked = (0, None)
        self.checked_samples = []  # RssAnon of the workload itself, in bounded phases
        self.samples = 0
        self.phase_totals = None  # the daemon's totals at --pswpout-after-phase
        self.stopped_since = None  # when it was first seen stopped (--continue-stopped-after)
        self.stops = 0
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out, True)),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, False))]
        for t in self.readers:
            t.daemon = True
            t.start()

    def _read(self, stream, sink, phases):
        for raw in stream:
            line = raw.decode(errors="replace").rstrip("\n")
            with self.lock:
                sink.append(line)
                if phases and line.startswith("phase "):
                    self.phase = line[6:].strip()
                    self.phases.append(self.phase)

    def phases_begun(self):
        """The phases the workload has begun, from its phase file (stdout's if it has none)."""
        begun = []
        if self.phase_file:
            try:
                with open(self.phase_file) as f:
                    begun = ["start"] + f.read().split()
            except FileNotFoundError:
                pass
        with self.lock:
            return begun if len(begun) >= len(self.phases) else list(self.phases)

    def sample(self, rss_skip_from):
        rss_of = [(pid, read_rss_anon(pid)) for pid in [self.pid] + descendants(self.pid)]
        begun = self.phases_begun()
        phase = begun[-1]
        skipping = rss_skip_from is not None and rss_skip_from in begun
        for pid, rss in rss_of:
            if rss is None:
                continue
            self.samples += 1
            if rss > self.peak.get(pid, (0, None))[0]:
                self.peak[pid] = (rss, phase)
            if pid == self.pid and not skipping:
                self.checked_samples.append(rss)
                if rss > self.peak_checked[0]:
                    self.peak_checked = (rss, phase)

    def kill(self):
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def finish(self):
        self.proc.wait()
        for t in self.readers:
            t.join(10)
        return self.proc.returncode

    def output(self, lines=30):
        with self.lock:
            return ("--- stdout (last lines) ---\n" + "\n".join(self.out[-lines:]) +
                    "\n--- stderr (last lines) ---\n" + "\n".join(self.err[-lines:]))


class StatsPoller(threading.Thread):
    """Samples the daemon's stats while the workloads run: what it says about each client."""

    def __init__(self, daemon, interval=0.25):
        super().__init__(daemon=True)
        self.d = daemon
        self.interval = interval
        self.stop_event = threading.Event()
        self.seen = {}     # pid -> dict of maxima and the budget it reported
        self.errors = 0
        self.last_error = None

    def run(self):
        while not self.stop_event.wait(self.interval):
            try:
                s = self.d.stats(timeout=10)
            except TestFailure as e:
                self.errors += 1
                self.last_error = str(e)
                continue
            note_clients(self.seen, s)

    def stop(self):
        self.stop_event.set()
        self.join(15)


def run_probe(probe):
    r = subprocess.run([probe], capture_output=True, text=True, timeout=60)
    msg = (r.stdout + r.stderr).strip()
    if r.returncode == SKIP:
        log(msg or "SKIP: uffd probe says the kernel lacks what memext needs")
        sys.exit(SKIP)
    if r.returncode != 0:
        raise TestFailure(f"uffd probe failed with {r.returncode}: {msg}")
    log(f"probe: {msg}")


def shim_env(args, sock, budget, debug=True):
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join([args.shim] + args.preload_also)
    env["MEMEXT_SOCKET"] = sock
    env["MEMEXT_BUDGET"] = budget
    if debug:
        env["MEMEXT_DEBUG"] = "1"
    else:
        env.pop("MEMEXT_DEBUG", None)
    env["MALLOC_PERTURB_"] = "0"
    for kv in args.env:
        key, _, value = kv.partition("=")
        env[key] = value
    return env


def mark_phase(args, daemon, c):
    """The daemon's totals when c first printed --pswpout-after-phase (taken once).

    Taken after the line was read, so the growth counted from it can only be less than the
    growth since the phase really began: the check errs on the strict side."""
    if (not args.pswpout_after_phase or daemon is None or c.phase_totals is not None or
            args.pswpout_after_phase not in c.phases):
        return
    c.phase_totals = daemon.stats()["totals"]
    log(f"workload {c.pid} reached phase '{args.pswpout_after_phase}': totals "
        f"{json.dumps(c.phase_totals)}")


def proc_state(pid):
    """The state letter of /proc/PID/stat ('R', 'S', 'T', ...), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return None


def continue_stopped(args, daemon, c):
    """SIGCONT for a workload that has stayed stopped --continue-stopped-after s (the shim
    stops it with MEMEXT_TEST_STOP_AT_MOVE, as Ctrl-Z would). With --squeeze-while-stopped,
    the system is short of memory meanwhile."""
    if proc_state(c.pid) not in ("T", "t"):
        c.stopped_since = None
        return
    now = time.monotonic()
    if c.stopped_since is None:
        c.stopped_since = now
        c.stops += 1
        log(f"workload {c.pid} is stopped (phase '{c.phase}')")
        if args.squeeze_while_stopped is not None:
            log(f"squeeze: MemAvailable {args.squeeze_while_stopped}% while it is stopped")
            daemon.set_available_pct(args.squeeze_while_stopped)
    elif now - c.stopped_since >= args.continue_stopped_after:
        if args.squeeze_while_stopped is not None:
            daemon.set_available_pct(args.system_available_pct)
        log(f"workload {c.pid} stayed stopped {args.continue_stopped_after} s: SIGCONT")
        os.kill(c.pid, signal.SIGCONT)
        c.stopped_since = None


def run_clients(args, env, daemon, tmp=None):
    clients = [Client(i, args.cmd, env, tmp) for i in range(args.clients)]
    log("started workload pid(s) " + ", ".join(str(c.pid) for c in clients) + ": " +
        " ".join(args.cmd))
    deadline = time.monotonic() + args.timeout
    killed = set()
    try:
        while any(c.proc.poll() is None for c in clients):
            for c in clients:
                if c.proc.poll() is None:
                    c.sample(args.rss_skip_from)
                    mark_phase(args, daemon, c)
                    if args.continue_stopped_after is not None:
                        continue_stopped(args, daemon, c)
                    if (args.kill_at_phase and c.idx not in killed and
                            args.kill_at_phase in c.phases):
                        log(f"workload {c.pid} reached phase '{args.kill_at_phase}': SIGKILL")
                        c.kill()
                        killed.add(c.idx)
                    if (args.kill_daemon_at_phase and daemon.restarts == 0 and
                            args.kill_daemon_at_phase in c.phases):
                        log(f"workload {c.pid} reached phase '{args.kill_daemon_at_phase}'")
                        daemon.crash_restart(args.daemon_timeout)
            if (daemon is not None and not daemon.alive() and args.daemon_crashes_at and
                    daemon.restarts == 0 and daemon.proc.returncode == -signal.SIGKILL):
                log(f"memextd killed itself at '{args.daemon_crashes_at}': starting a new one")
                daemon.start_again(args.daemon_timeout)
            if daemon is not None:
                daemon.check_alive(" while the workload ran")
            if time.monotonic() > deadline:
                raise Timeout(f"workload still running after {args.timeout} s (hang guard)")
            time.sleep(0.02)
    except BaseException as e:
        for c in clients:
            c.kill()
        for c in clients:
            c.finish()
        if isinstance(e, (TestFailure, Timeout)):
            msg = str(e)
            for c in clients:
                msg += f"\nworkload {c.pid} (phase '{c.phase}'):\n{c.output()}"
            if daemon is not None:
                msg += f"\n--- memextd log (last lines) ---\n{tail(daemon.log_path)}"
            raise TestFailure(msg)
        raise
    for c in clients:
        c.finish()
    return clients


def check_exit(c, expect_signal=None):
    rc = c.proc.returncode
    if expect_signal is not None:
        if rc != -expect_signal:
            raise TestFailure(f"workload {c.pid} should have died of signal {expect_signal}, "
                              f"but its status is {rc}\n{c.output()}")
        return
    if rc != 0:
        why = (f"killed by signal {-rc}" if rc < 0 else
               "found wrong data (exit 1)" if rc == 1 else f"exited {rc}")
        raise TestFailure(f"workload {c.pid} {why}\n{c.output()}")


def wait_client_gone(daemon, pids, base, timeout, slack=0, settle=5):
    """Poll the stats until the clients left and the store is empty again (hang guards).

    Returns (last stats, list of problems). Waits up to `timeout` s for the clients to leave
    "clients" and store.stored_pages to reach 0, then up to `settle` s more for
    store.mem_used_total to come back to its value before the test.
    """
    deadline = time.monotonic() + timeout
    settle_deadline = None
    while True:
        s = daemon.stats()
        listed = [c for c in s["clients"] if c.get("pid") in pids]
        st = s["store"]
        problems = []
        if listed:
            problems.append(f"exited client(s) still listed in 'clients': {json.dumps(listed)}")
        if st["stored_pages"] != 0:
            problems.append(f"store.stored_pages is {st['stored_pages']}, not 0")
        gone = not problems
        if st["mem_used_total"] > base["store"]["mem_used_total"] + slack:
            problems.append(f"store.mem_used_total is {st['mem_used_total']} bytes, was "
                            f"{base['store']['mem_used_total']} before the test (+"
                            f"{st['mem_used_total'] - base['store']['mem_used_total']}): the "
                            f"daemon's memory did not return to where it was")
        if not problems:
            return s, []
        now = time.monotonic()
        if gone and settle_deadline is None:
            settle_deadline = now + settle
        if now > deadline or (settle_deadline is not None and now > settle_deadline):
            return s, ["after the workload exited: " + p for p in problems]
        time.sleep(0.05)


def check_adoption(args, daemon, clients, after):
    """--kill-daemon-at-phase: the restarted daemon adopted every client's evicted pages and
    lost none (totals.adopt_swap_pages at least --min-adopt-swap-pages)."""
    return adoption_problems(daemon, [c.pid for c in clients], after,
                             args.min_adopt_swap_pages)


def check_fork_adoption(daemon, clients):
    """--daemon-crashes-at fork-*: the new daemon gave each fork child the pages its parent
    shared, taken from the dead daemon's memory, and lost none."""
    text = daemon.log_text()
    problems = []
    if daemon.restarts != 1:
        problems.append("memextd never reached the point where it kills itself")
    for c in clients:
        got = [int(n) for n in re.findall(rf"client \d+: adopted (\d+) pages its parent "
                                         rf"{c.pid} shared at fork", text)]
        # The dying daemon may still have answered the child's hello (its main thread runs
        # on while the thread that answered the fork kills it): the child is then adopted
        # from its own record, like any client, when its agent reconnects.
        children = {p for p in c.peak if p != c.pid}
        own = [int(n) for pid, n in re.findall(r"client (\d+) \(.*\) adopted: (\d+) evicted "
                                               r"pages restored", text) if int(pid) in children]
        log(f"fork children of {c.pid} adopted from the dead daemon: {got} pages from the "
            f"snapshot, {own} from their own record")
        if not any(got + own):
            problems.append(f"no fork child of {c.pid} had its shared pages adopted")
    if any(lost in text for lost in ("could not be recovered", "are gone",
                                     "could not be put back", "neither put back")):
        problems.append("the restarted memextd lost pages (see its log)")
    return problems


def check_workingset(args, d):
    """The refault-detection bounds (--max-workingset-refault, --min-workingset-activate)."""
    failures = []
    if args.max_workingset_refault is None and args.min_workingset_activate is None:
        return failures
    log(f"workingset: refault {d['workingset_refault']} (max {args.max_workingset_refault}), "
        f"activate {d['workingset_activate']} (min {args.min_workingset_activate}), restore "
        f"{d['workingset_restore']}, deactivated {d['reclaim_deactivated']}")
    if d["workingset_refault"] <= 0:
        failures.append("totals.workingset_refault did not grow")
    if (args.max_workingset_refault is not None
            and d["workingset_refault"] > args.max_workingset_refault):
        failures.append(f"totals.workingset_refault grew by {d['workingset_refault']}, more "
                        f"than {args.max_workingset_refault}: the hot pages were not kept")
    if (args.min_workingset_activate is not None
            and d["workingset_activate"] < args.min_workingset_activate):
        failures.append(f"totals.workingset_activate grew by only {d['workingset_activate']}, "
                        f"expected at least {args.min_workingset_activate}")
    return failures


def silent_connections(daemon, n):
    """n connections to the daemon's client socket that never say hello, as from processes
    stopped between connect() and their hello, and n to its stats socket that never ask: the
    daemon must serve the workload and the stats meanwhile (each one held up its main thread
    for 2 s or 1 s before session 15, and the workload's hello waited behind them all)."""
    socks = []
    for _ in range(n):
        for path, kind in ((daemon.sock, socket.SOCK_SEQPACKET),
                           (daemon.stats_sock, socket.SOCK_STREAM)):
            s = socket.socket(socket.AF_UNIX, kind)
            s.connect(path)
            socks.append(s)
    if n:
        log(f"{n} client and {n} stats connections open that send nothing")
    return socks


def check_silent_dropped(daemon, socks):
    """The daemon dropped every silent connection, and said so."""
    if not socks:
        return

    def dropped():
        with open(daemon.log_path, errors="replace") as f:
            return sum("sent no hello" in ln for ln in f) >= len(socks) // 2
    wait_for(dropped, 60, f"memextd dropping the {len(socks) // 2} silent client connections",
             alive=daemon.check_alive)
    for s in socks:
        s.settimeout(30)   # a hang guard: the stats ones are closed by the same timer
        if s.recv(1) != b"":
            raise TestFailure("a silent connection got data instead of being closed")
        s.close()
    log(f"memextd dropped the {len(socks)} silent connections")


def test_managed(args, tmp):
    # What the daemon gives the client: MEMEXT_BUDGET, or the minimum it raises that to.
    budget = parse_size(args.daemon_budget or args.budget)
    footprint = parse_size(args.footprint)
    bound = int(budget * 1.25) + 16 * MiB
    auto_out = max(1, (footprint - bound) // PAGE)
    if args.rss_bound:
        bound = parse_size(args.rss_bound)
    min_out = (args.min_pswpout if args.min_pswpout is not None else auto_out) * args.clients
    min_in = int(min_out * args.min_pswpin_frac)

    daemon = make_daemon(args, tmp)
    poller = None
    try:
        daemon.start(args.daemon_timeout)
        base = daemon.stats()
        log(f"daemon up; totals before: {json.dumps(base['totals'])}; store before: "
            f"{json.dumps(base['store'])}")
        if base["store"]["stored_pages"] != 0:
            raise TestFailure(f"a fresh daemon's store is not empty: {json.dumps(base['store'])}")

        env = shim_env(args, daemon.sock, args.budget)
        if not any(kv.startswith("MEMEXT_WL_EXPECT_EVICTION=") for kv in args.env):
            env["MEMEXT_WL_EXPECT_EVICTION"] = "1"  # unless --env says otherwise
        env["MEMEXT_WL_DAEMON_PID"] = str(daemon.proc.pid)  # wl-burst stops it a moment
        silent = silent_connections(daemon, args.silent_connections)
        poller = StatsPoller(daemon)
        poller.start()
        clients = run_clients(args, env, daemon, tmp)
        poller.stop()
        check_silent_dropped(daemon, silent)

        rcs = [c.proc.returncode for c in clients]
        if SKIP in rcs and set(rcs) <= {0, SKIP}:
            log(f"SKIP: a workload has nothing to test here\n"
                f"{clients[rcs.index(SKIP)].output()}")
            sys.exit(SKIP)
        for c in clients:
            try:
                check_exit(c, signal.SIGKILL if args.kill_at_phase else None)
            except TestFailure as e:
                raise TestFailure(f"{e}\n--- memextd log (last lines) ---\n"
                                  f"{tail(daemon.log_path)}")
        if not daemon.alive():
            raise TestFailure(f"memextd died (exit {daemon.proc.returncode}) during the test; "
                              f"its log:\n{tail(daemon.log_path)}")

        pids = set()
        for c in clients:
            pids.add(c.pid)
            pids.update(c.peak.keys())
        after, gone_problems = wait_client_gone(daemon, pids, base, args.exit_timeout,
                                                 args.mem_used_slack)
        now = daemon.totals(after)
        d = {k: now.get(k, 0) - base["totals"].get(k, 0)
             for k in ("pswpout", "pswpin", "faults", "clients_seen", "workingset_refault",
                       "workingset_activate", "workingset_restore", "reclaim_deactivated")}
        if args.kill_daemon_at_phase:
            failures_crash = check_adoption(args, daemon, clients, after)
        elif args.daemon_crashes_at and args.daemon_crashes_at.startswith("fork-"):
            failures_crash = check_fork_adoption(daemon, clients)
        elif args.daemon_crashes_at:
            failures_crash = check_adoption(args, daemon, clients, after)
        else:
            failures_crash = []

        # Report everything first, then judge.
        failures = list(gone_problems) + failures_crash
        if gone_problems:
            log(f"stats after the workload exited: {json.dumps(after)}")
        for c in clients:
            rss, phase = c.peak_checked
            if args.expect_client_says:
                said = [l for l in c.err if args.expect_client_says in l]
                log(f"workload {c.pid} said: {said[0] if said else '(nothing of it)'}")
                if not said:
                    failures.append(f"workload {c.pid}: no line of its stderr says "
                                    f"'{args.expect_client_says}'")
            log(f"workload {c.pid}: exit {c.proc.returncode}; peak RssAnon {mib(rss)} in phase "
                f"'{phase}' (bound {mib(bound)} = budget {mib(budget)} * 1.25 + 16 MiB; "
                f"{c.samples} samples" +
                (f", samples from phase '{args.rss_skip_from}' on not bounded" if
                 args.rss_skip_from else "") + ")")
            for pid, (prss, pphase) in sorted(c.peak.items()):
                if pid != c.pid or args.rss_skip_from:
                    log(f"  process {pid}{' (child)' if pid != c.pid else ''}: peak RssAnon "
                        f"{mib(prss)} (phase '{pphase}'), not bounded")
            if c.samples == 0:
                failures.append(f"workload {c.pid}: no RssAnon sample was taken")
            if rss > bound:
                over = sum(1 for r in c.checked_samples if r > bound)
                ordered = sorted(c.checked_samples)
                median = ordered[len(ordered) // 2]
                failures.append(f"workload {c.pid}: peak RssAnon {mib(rss)} (phase '{phase}') "
                                f"exceeds the bound {mib(bound)} in {over} of "
                                f"{len(ordered)} samples (median {mib(median)}): memext did "
                                f"not hold the process near its budget of {mib(budget)}")
            seen = poller.seen.get(c.pid)
            if seen is None:
                log(f"  client {c.pid} was not caught by a stats sample while it ran")
            else:
                log(f"  client {c.pid} as the daemon saw it: budget_bytes "
                    f"{sorted(seen['budget_bytes'], key=str)}, max resident_pages "
                    f"{seen.get('resident_pages')}, max evicted_pages "
                    f"{seen.get('evicted_pages')}, pswpout {seen.get('pswpout')}, pswpin "
                    f"{seen.get('pswpin')}, faults {seen.get('faults')}, of them the "
                    f"agent's {seen.get('agent_faults')}; uffd reads that waited for the move "
                    f"gate {seen.get('gate_waits')} ({seen.get('gate_wait_usec')} µs), put off "
                    f"{seen.get('gate_deferred')}")
                if args.min_agent_unshare_faults:
                    unshare = seen.get("agent_unshare_faults", 0)
                    if unshare < args.min_agent_unshare_faults:
                        failures.append(f"client {c.pid}: agent_unshare_faults {unshare} in the "
                                        f"stats, expected {args.min_agent_unshare_faults} or more: "
                                        f"the test did not reach its case")
                    if not 0 <= seen.get("agent_faults", 0) - unshare <= args.agent_faults_slack:
                        failures.append(f"client {c.pid}: agent_faults {seen.get('agent_faults')}"
                                        f" but agent_unshare_faults {unshare}: the agent faulted "
                                        f"elsewhere than in making a page exclusive")
                elif (seen.get("agent_faults") or 0) > args.agent_faults_slack:
                    failures.append(agent_faults_problem(f"client {c.pid}",
                                                         seen.get("agent_faults")))
                if not 0 <= seen.get("gate_deferred", -1) <= seen.get("gate_waits", -1):
                    failures.append(f"client {c.pid}: gate_deferred {seen.get('gate_deferred')} "
                                    f"and gate_waits {seen.get('gate_waits')} in the stats: "
                                    f"missing, or more reads put off than waited")
                if seen["budget_bytes"] != {budget}:
                    failures.append(f"client {c.pid}: budget_bytes {seen['budget_bytes']} in "
                                    f"the stats, expected {budget} (MEMEXT_BUDGET="
                                    f"{args.budget})")
        log(f"daemon totals grew by: pswpout {d['pswpout']} pages (min {min_out}), pswpin "
            f"{d['pswpin']} pages (min {min_in}), faults {d['faults']}, clients_seen "
            f"{d['clients_seen']}; store after: {json.dumps(after['store'])}")
        if poller.errors:
            log(f"  ({poller.errors} stats samples failed during the run: {poller.last_error})")
        if d["clients_seen"] < args.clients:
            failures.append(f"totals.clients_seen grew by {d['clients_seen']}, expected at "
                            f"least {args.clients}: the shim did not register with the daemon")
        if d["pswpout"] < min_out:
            failures.append(f"totals.pswpout grew by only {d['pswpout']} pages, expected at "
                            f"least {min_out}: memext did not evict the memory beyond the "
                            f"budget")
        if args.max_pswpout is not None and d["pswpout"] > args.max_pswpout:
            failures.append(f"totals.pswpout grew by {d['pswpout']} pages, expected at most "
                            f"{args.max_pswpout}: memext evicted memory it had no reason to")
        if d["pswpin"] < min_in:
            failures.append(f"totals.pswpin grew by only {d['pswpin']} pages, expected at "
                            f"least {min_in}: evicted pages were not brought back")
        if args.max_faults is not None:
            if d["faults"] > args.max_faults:
                failures.append(f"totals.faults grew by {d['faults']}, expected at most "
                                f"{args.max_faults}: the client was tracked")
        elif d["faults"] <= 0:
            failures.append("totals.faults did not grow")
        if args.pswpout_after_phase:
            for c in clients:
                if c.phase_totals is None:
                    failures.append(f"workload {c.pid} never printed phase "
                                    f"'{args.pswpout_after_phase}'")
                    continue
                grew = after["totals"]["pswpout"] - c.phase_totals["pswpout"]
                log(f"workload {c.pid}: pswpout grew by {grew} pages from phase "
                    f"'{args.pswpout_after_phase}' on (min {args.min_pswpout_after})")
                if grew < args.min_pswpout_after:
                    failures.append(f"workload {c.pid}: pswpout grew by only {grew} pages "
                                    f"after phase '{args.pswpout_after_phase}', expected at "
                                    f"least {args.min_pswpout_after}: eviction stopped")
        failures += check_workingset(args, d)
        if (args.min_forks_shared or args.min_forks_drained or
                args.max_forks_drained is not None):
            fk = {k: after["totals"].get(k, 0) - base["totals"].get(k, 0)
                  for k in ("forks_shared", "forks_drained", "fork_pages_shared")}
            log(f"forks: {fk['forks_shared']} shared {fk['fork_pages_shared']} evicted pages "
                f"with the child, {fk['forks_drained']} drained")
            if fk["forks_shared"] < args.min_forks_shared:
                failures.append(f"totals.forks_shared grew by {fk['forks_shared']}, expected "
                                f"at least {args.min_forks_shared}: the children did not share "
                                f"the evicted pages")
            if fk["forks_drained"] < args.min_forks_drained:
                failures.append(f"totals.forks_drained grew by {fk['forks_drained']}, expected "
                                f"at least {args.min_forks_drained}")
            if args.max_forks_drained is not None and fk["forks_drained"] > args.max_forks_drained:
                failures.append(f"totals.forks_drained grew by {fk['forks_drained']}, expected "
                                f"at most {args.max_forks_drained}: forks brought pages back")
        if args.continue_stopped_after is not None:
            for c in clients:
                if c.stops == 0:
                    failures.append(f"workload {c.pid} was never seen stopped: the test "
                                    f"tested nothing")
                states = poller.seen.get(c.pid, {}).get("states", set())
                log(f"client {c.pid}: states seen in the stats: {sorted(states, key=str)}")
                # memextd let its agent run while it was stopped (evict-stopped): no batch
                # waited for it long.
                holds = (after["totals"].get("stopped_holds", 0) -
                         base["totals"].get("stopped_holds", 0))
                if "stopped" not in states and holds == 0:
                    failures.append(f"client {c.pid}: memextctl stats never showed it "
                                    f"'stopped' while its batch waited for it")
        with open(daemon.log_path, errors="replace") as f:
            if "the agent did not answer" in f.read():
                failures.append("memextd gave up on an agent that did not answer: that "
                                "process is no longer evicted")
        for spec in args.min_total:
            key, _, want = spec.partition("=")
            grew = after["totals"].get(key, 0) - base["totals"].get(key, 0)
            log(f"totals.{key} grew by {grew} (min {want})")
            if grew < int(want):
                failures.append(f"totals.{key} grew by {grew}, expected at least {want}")
        def grew_by(key):
            return after["totals"].get(key, 0) - base["totals"].get(key, 0)

        for spec in args.max_total:
            key, _, most = spec.partition("=")
            other, _, slack = most.rpartition("+")
            bound = grew_by(other) + int(slack) if other else int(most)
            grew = grew_by(key)
            log(f"totals.{key} grew by {grew} (max {most} = {bound})")
            if key not in after["totals"] or (other and other not in after["totals"]) \
                    or grew > bound:
                failures.append(f"totals.{key} grew by {grew}, expected at most {most} "
                                f"= {bound}")
        if failures:
            msg = "\n".join("FAIL: " + f for f in failures)
            for c in clients:
                msg += f"\nworkload {c.pid}:\n{c.output(15)}"
            msg += f"\n--- memextd log (last lines) ---\n{tail(daemon.log_path)}"
            raise TestFailure(msg)
    except TestFailure as e:
        if poller is not None and poller.is_alive():
            poller.stop()
        rc = daemon.stop()
        raise TestFailure(f"{e}\n(memextd's exit status after SIGTERM: {rc})")
    finally:
        if poller is not None and poller.is_alive():
            poller.stop()
        rc = daemon.stop()
    if rc != 0:
        raise TestFailure(f"memextd exited {rc} on SIGTERM (expected 0); its log:\n"
                          f"{tail(daemon.log_path)}")
    log("memextd exited 0 on SIGTERM")


def run_failopen_once(args, env, daemon, label):
    clients = run_clients(args, env, daemon)
    c = clients[0]
    check_exit(c)
    lines = [line for line in c.err if line.startswith("memext:")]
    log(f"{label}: workload exit 0; 'memext:' lines on stderr: {lines}")
    return lines, c


def test_failopen(args, tmp):
    daemon = None
    try:
        if args.mode == "no-daemon":
            sock = os.path.join(tmp, "no-such-dir", "memextd.sock")
            budget = args.budget
        else:
            daemon = make_daemon(args, tmp)
            daemon.start(args.daemon_timeout)
            base = daemon.stats()
            sock = daemon.sock
            budget = "bogus"
        lines, c = run_failopen_once(args, shim_env(args, sock, budget, debug=True), daemon,
                                     "MEMEXT_DEBUG=1")
        if not lines:
            raise TestFailure(f"with MEMEXT_DEBUG=1 and {args.mode}, the shim did not print a "
                              f"line starting with 'memext:' on stderr\n{c.output()}")
        lines, c = run_failopen_once(args, shim_env(args, sock, budget, debug=False), daemon,
                                     "without MEMEXT_DEBUG")
        if lines:
            raise TestFailure(f"without MEMEXT_DEBUG the shim must be quiet, but it printed "
                              f"{lines}")
        if daemon is not None:
            after = daemon.stats()
            d = {k: after["totals"][k] - base["totals"][k]
                 for k in ("clients_seen", "pswpout")}
            log(f"daemon totals grew by {json.dumps(d)}; clients now {after['clients']}")
            if d["clients_seen"] != 0 or d["pswpout"] != 0 or after["clients"]:
                raise TestFailure(f"with MEMEXT_BUDGET=bogus the shim must stay out, but the "
                                  f"daemon saw a client: totals grew by {d}, clients "
                                  f"{after['clients']}")
            if not daemon.alive():
                raise TestFailure(f"memextd died; its log:\n{tail(daemon.log_path)}")
    finally:
        rc = daemon.stop() if daemon is not None else 0
    if rc != 0:
        raise TestFailure(f"memextd exited {rc} on SIGTERM (expected 0); its log:\n"
                          f"{tail(daemon.log_path)}")


# setpriv itself must run without the shim: its setresuid, capset, setresgid sequence assumes
# a single thread (see libmemext(7)); env sets LD_PRELOAD for the exec.
AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env"]


def nobody_bindir(tmp, what):
    """tmp/bin, which nobody can reach whatever the permissions of the build directory, for
    copies of the programs to run as nobody; skips (77) without root and setpriv."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        log(f"SKIP: {what} needs root and setpriv")
        sys.exit(SKIP)
    bindir = os.path.join(tmp, "bin")
    os.mkdir(bindir)
    os.chmod(tmp, 0o755)
    os.chmod(bindir, 0o755)
    return bindir


def setuid_copy(args, tmp, sock):
    """The workload copied into tmp, setuid root, and the command that runs it as nobody."""
    bindir = nobody_bindir(tmp, "making a setuid program")
    prog = os.path.join(bindir, os.path.basename(args.cmd[0]))
    shutil.copy(args.cmd[0], prog)
    os.chown(prog, 0, 0)
    os.chmod(prog, 0o4755)
    env = shim_env(args, sock, args.budget)
    pre = [f"{k}={env[k]}" for k in ("LD_PRELOAD", "MEMEXT_SOCKET", "MEMEXT_BUDGET",
                                     "MEMEXT_DEBUG")]
    return AS_NOBODY + pre + [prog] + args.cmd[1:]


def test_not_managed(args, tmp):
    """A setuid (--setuid) or static workload under the shim: it runs, and stays unmanaged."""
    daemon = make_daemon(args, tmp)
    try:
        daemon.start(args.daemon_timeout)
        os.chmod(daemon.sock, 0o666)  # were the shim loaded, it could connect as nobody
        base = daemon.stats()
        env = shim_env(args, daemon.sock, args.budget)
        if args.setuid:
            args.cmd = setuid_copy(args, tmp, daemon.sock)
            env.pop("LD_PRELOAD")
        lines, c = run_failopen_once(args, env, daemon, "under the shim")
        info = [line for line in c.out if line.startswith("secure ")]
        log(f"workload says: {info}")
        if not info:
            raise TestFailure(f"the workload printed no 'secure' line\n{c.output()}")
        f = info[0].split()
        secure, euid, mapped = int(f[1]), int(f[3]), int(f[5])
        if args.setuid and secure != 1:
            log(f"SKIP: the setuid bit took no effect (AT_SECURE {secure}, euid {euid}): a "
                f"nosuid mount?")
            sys.exit(SKIP)
        after = daemon.stats()
        d = after["totals"]["clients_seen"] - base["totals"]["clients_seen"]
        log(f"libmemext mapped: {mapped}; daemon clients_seen grew by {d}; 'memext:' lines {lines}")
        if mapped or d != 0 or lines:
            raise TestFailure(f"the shim did not stay out: libmemext mapped {mapped}, the "
                              f"daemon saw {d} client(s), it said {lines}")
    finally:
        rc = daemon.stop()
    if rc != 0:
        raise TestFailure(f"memextd exited {rc} on SIGTERM (expected 0); its log:\n"
                          f"{tail(daemon.log_path)}")


def uffd_open_to_nobody():
    """Whether an unprivileged user could make a userfaultfd memext can use here."""
    try:
        with open("/proc/sys/vm/unprivileged_userfaultfd") as f:
            if f.read().strip() != "0":
                return True
    except OSError:
        pass
    try:
        return bool(os.stat("/dev/userfaultfd").st_mode & 0o006)
    except OSError:
        return False


def test_pid_namespace(args, tmp):
    """The workload in a PID namespace of its own (unshare --pid), as in a container or
    Chromium's zygote: its hello names it by its namespace's pid, which memextd translates
    (NSpid). It must be managed, its fork children too, and check its data; before, memextd
    refused such a hello and the process ran unmanaged."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or not unshare:
        log("SKIP: needs root and unshare(1)")
        sys.exit(SKIP)
    daemon = make_daemon(args, tmp)
    try:
        daemon.start(args.daemon_timeout)
        base = daemon.stats()["totals"]
        args.cmd = [unshare, "--fork", "--pid", "--mount-proc"] + args.cmd
        env = shim_env(args, daemon.sock, args.budget, debug=True)
        env["MEMEXT_WL_EXPECT_EVICTION"] = "1"
        lines, c = run_failopen_once(args, env, daemon, "in a PID namespace")
        if any("did not accept us" in ln for ln in lines):
            raise TestFailure(f"memextd refused a process of the namespace: {lines}")
        with open(daemon.log_path, errors="replace") as f:
            seen = [ln.rstrip() for ln in f if "in a PID namespace of its own" in ln]
        totals = daemon.stats()["totals"]
        d = {k: totals[k] - base[k] for k in ("pswpout", "pswpin", "forks_shared")}
        log(f"daemon: {len(seen)} hellos from the namespace, e.g. {seen[:1]}; totals grew "
            f"by {d}")
        if len(seen) < 2 or d["pswpout"] < 4096 or d["pswpin"] < 1024 or \
                d["forks_shared"] < 1:
            raise TestFailure("the namespace's processes were not managed (at least 2 hellos "
                              "from it, 4096 pages out, 1024 back and a fork sharing them)")
    finally:
        daemon.stop()


def test_no_uffd(args, tmp):
    """The workload as nobody, who may not make a userfaultfd: it runs unmanaged, twice, and
    the daemon says why once, at warning level, with what to do, and counts both."""
    bindir = nobody_bindir(tmp, "running the workload as nobody")
    if uffd_open_to_nobody():
        log("SKIP: unprivileged users may make a userfaultfd on this machine")
        sys.exit(SKIP)
    daemon = make_daemon(args, tmp)
    try:
        daemon.start(args.daemon_timeout)
        os.chmod(daemon.sock, 0o666)
        base = daemon.stats()["totals"]
        # A command name with a newline, as any process may give itself: the daemon's log
        # line must stay one line (a forged "<0>..." line would read as an emergency).
        prog = os.path.join(bindir, "wl\n<0>forged")
        shim = os.path.join(bindir, os.path.basename(args.shim))
        shutil.copy(args.cmd[0], prog)
        shutil.copy(args.shim, shim)
        args.cmd = AS_NOBODY + [f"LD_PRELOAD={shim}", f"MEMEXT_SOCKET={daemon.sock}",
                                f"MEMEXT_BUDGET={args.budget}", prog] + args.cmd[1:]
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        for i in range(2):
            lines, _ = run_failopen_once(args, env, daemon, f"as nobody, run {i + 1}")
            if lines:
                raise TestFailure(f"without MEMEXT_DEBUG the shim must be quiet, but it "
                                  f"printed {lines}")
        # The daemon reads a connection's message after the workload may have exited.
        wait_for(lambda: daemon.stats()["totals"]["clients_no_uffd"] - base["clients_no_uffd"]
                 >= 2, 30, "the daemon counting both runs in clients_no_uffd",
                 alive=daemon.check_alive)
        totals = daemon.stats()["totals"]
        d = {k: totals[k] - base[k] for k in ("clients_seen", "clients_no_uffd")}
        with open(daemon.log_path, errors="replace") as f:
            said = [ln.rstrip() for ln in f if "runs without memext" in ln]
        log(f"daemon totals grew by {json.dumps(d)}; its log: {said}")
        if d != {"clients_seen": 0, "clients_no_uffd": 2}:
            raise TestFailure(f"expected clients_seen +0 and clients_no_uffd +2, got {d}")
        if (len(said) != 1 or "uid 65534" not in said[0] or "group memext" not in said[0]
                or "warning" not in said[0] or "(wl?<0>forged, uid" not in said[0]):
            raise TestFailure(f"expected one warning naming the process (its newline made "
                              f"'?'), uid 65534 and group memext in the daemon's log, got "
                              f"{said}")
        with open(daemon.log_path, errors="replace") as f:
            forged = [ln for ln in f if ln.startswith("<0>forged")]
        if forged:
            raise TestFailure(f"a command name forged a line of the daemon's log: {forged}")
    finally:
        rc = daemon.stop()
    if rc != 0:
        raise TestFailure(f"memextd exited {rc} on SIGTERM (expected 0); its log:\n"
                          f"{tail(daemon.log_path)}")


class SlowHelloDaemon(threading.Thread):
    """A stand-in for memextd that answers a fork child's hello only after `delay` s.

    It speaks just enough of the protocol (shared/protocol.h): MSG_HELLO -> MSG_HELLO_ACK
    (status 0), MSG_FORK_PREPARE -> MSG_FORK_READY; it registers nothing, so no fault ever
    waits for it. It counts the hellos it answered."""

    MAGIC, VERSION = 0x584d454d, 1
    HELLO, HELLO_ACK, FORK_PREPARE, FORK_READY = 1, 2, 3, 4
    FORK_CHILD = 1

    def __init__(self, path, delay):
        super().__init__(daemon=True)
        self.delay = delay
        self.hellos = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        self.sock.listen(16)

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def reply(self, conn, type_, seq, body):
        conn.send(struct.pack("<IHHII", self.MAGIC, self.VERSION, type_, 16 + len(body), seq) +
                  body)

    def serve(self, conn):
        # The fds a hello brings stay open while the client is connected: closing the agent
        # socket's end would tell the shim's agent that its daemon died.
        held = []
        with conn:
            try:
                self.serve_messages(conn, held)
            finally:
                for fd in held:
                    os.close(fd)

    def serve_messages(self, conn, held):
        while True:
            try:
                msg, anc, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4))
            except OSError:
                return
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    held += struct.unpack(f"<{len(data) // 4}i", data[:len(data) // 4 * 4])
            if len(msg) < 16:
                return
            _, _, type_, _, seq = struct.unpack("<IHHII", msg[:16])
            if type_ == self.HELLO:
                pid, parent, _, flags = struct.unpack("<iiiI", msg[16:32])
                if flags & self.FORK_CHILD:
                    log(f"fake daemon: hello from fork child {pid} of {parent}: answering "
                        f"in {self.delay} s")
                    time.sleep(self.delay)
                self.reply(conn, self.HELLO_ACK, seq, struct.pack("<iIQ", 0, 0, pid))
                self.hellos += 1
            elif type_ == self.FORK_PREPARE:
                self.reply(conn, self.FORK_READY, seq, struct.pack("<iI", 0, 0))

    def stop(self):
        self.sock.close()


def test_slow_hello(args, tmp):
    """A fork child whose hello is answered late, while signal handlers interrupt it."""
    path = os.path.join(tmp, "memextd.sock")
    fake = SlowHelloDaemon(path, 1.0)
    fake.start()
    try:
        lines, c = run_failopen_once(args, shim_env(args, path, args.budget), None,
                                     "against the slow daemon")
    finally:
        fake.stop()
    managed = [line for line in lines if "managed by memextd" in line]
    log(f"hellos answered: {fake.hellos}; 'managed' lines: {len(managed)}")
    if len(managed) != 2 or len(lines) != 2:
        raise TestFailure(f"parent and child should both say they are managed, and nothing "
                          f"else; the shim said {lines}\n{c.output()}")


def test_dies_at_stop(args, tmp):
    """Two workloads paused after their fill, most of their memory evicted; memextd gets
    SIGTERM and gives the newer (and larger) one its pages back first; the older one is
    SIGKILLed meanwhile, after memextd stopped watching for exits. memextd must see it gone
    when its turn comes and exit, not try to give a dead process its pages for ever."""
    daemon = make_daemon(args, tmp)
    daemon.start(args.daemon_timeout)
    env = shim_env(args, daemon.sock, args.budget)
    victim = survivor = None
    try:
        victim = Client(0, args.cmd, env)
        wait_phase(args, victim, "filled")
        survivor = Client(1, args.cmd[:1] + [args.dies_at_stop_survivor] + args.cmd[2:], env)
        wait_phase(args, survivor, "filled")
        evicted = {c.get("pid"): c.get("evicted_pages") for c in daemon.stats()["clients"]}
        log(f"evicted pages per client: {evicted}")
        if not evicted.get(victim.pid) or not evicted.get(survivor.pid):
            raise TestFailure("the workloads had no evicted pages: nothing to test")
        daemon.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + args.daemon_timeout
        while "stopping: giving every client" not in open(daemon.log_path).read():
            if time.monotonic() > deadline:
                raise TestFailure("memextd did not say it was stopping")
            time.sleep(0.01)
        log(f"memextd is stopping: SIGKILL workload {victim.pid}")
        victim.kill()
        victim.finish()
        try:
            rc = daemon.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise TestFailure(f"memextd had not exited 60 s after SIGTERM: it is still "
                              f"giving pages back to the dead process {victim.pid}?\n"
                              f"{tail(daemon.log_path)}")
        log(f"memextd exited {rc}")
        if rc != 0:
            raise TestFailure(f"memextd exited {rc} on SIGTERM; its log:\n"
                              f"{tail(daemon.log_path)}")
        if f"client {victim.pid}: exited while memextd stopped" not in open(daemon.log_path).read():
            raise TestFailure(f"memextd's log does not say it found client {victim.pid} gone "
                              f"while stopping: the case was not reached\n"
                              f"{tail(daemon.log_path)}")
    finally:
        for c in (victim, survivor):
            if c is not None:
                c.kill()
                c.finish()
        daemon.stop()


def wait_phase(args, c, phase):
    deadline = time.monotonic() + args.timeout
    while phase not in c.phases:
        if c.proc.poll() is not None:
            raise TestFailure(f"workload {c.pid} exited {c.proc.returncode} before phase "
                              f"'{phase}'\n{c.output()}")
        if time.monotonic() > deadline:
            raise TestFailure(f"workload {c.pid} did not reach phase '{phase}'")
        time.sleep(0.05)


def test_ctl_no_socket(args, tmp):
    sock = os.path.join(tmp, "absent", "stats.sock")
    cmd = [args.memextctl, "--stats-socket", sock, "stats", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    log(f"{' '.join(cmd)}: exit {r.returncode}, stderr {r.stderr.strip()!r}")
    if r.returncode != 1:
        raise TestFailure(f"memextctl with a missing socket exited {r.returncode}, expected 1")
    if not r.stderr.strip():
        raise TestFailure("memextctl with a missing socket printed no error on stderr")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", default="integration")
    ap.add_argument("--memextd", required=True)
    ap.add_argument("--memextctl", required=True)
    ap.add_argument("--shim", required=True)
    ap.add_argument("--probe", required=True)
    ap.add_argument("--mode", default="managed",
                    choices=["managed", "no-daemon", "bad-budget", "ctl-no-socket",
                             "not-managed", "no-uffd", "slow-hello", "dies-at-stop",
                             "pid-namespace"])
    ap.add_argument("--dies-at-stop-survivor", default="1G", metavar="SIZE",
                    help="dies-at-stop: the second workload's size (its first argument)")
    ap.add_argument("--setuid", action="store_true",
                    help="not-managed: run a setuid-root copy of the workload as nobody")
    ap.add_argument("--budget", default="32M")
    ap.add_argument("--daemon-budget", default=None, metavar="SIZE",
                    help="the budget the daemon must give the client, when not --budget")
    ap.add_argument("--footprint", default="128M",
                    help="memory the workload keeps live (for the pswpout threshold)")
    ap.add_argument("--clients", type=int, default=1, help="copies of the workload at once")
    ap.add_argument("--silent-connections", type=int, default=0, metavar="N",
                    help="hold N connections to memextd that never say hello meanwhile")
    ap.add_argument("--min-pswpout", type=int, default=None,
                    help="pages per client (default: (footprint - RSS bound) / 4 KiB)")
    ap.add_argument("--min-pswpin-frac", type=float, default=1.0,
                    help="minimum pswpin as a fraction of the minimum pswpout")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="set in the workload's environment")
    ap.add_argument("--rss-skip-from", default=None,
                    help="samples from this phase on are reported, not bounded")
    ap.add_argument("--max-faults", type=int, default=None,
                    help="fail if the daemon answered more faults than this (0: the client "
                         "must run untracked)")
    ap.add_argument("--max-pswpout", type=int, default=None,
                    help="fail if more pages than this were evicted")
    ap.add_argument("--system-available-pct", type=int, default=90,
                    help="run memextd with a stand-in /proc/meminfo whose MemAvailable is "
                         "this percent of MemTotal (the system's watermarks; default %(default)s: "
                         "the tests do not depend on what else runs on the machine)")
    ap.add_argument("--kill-daemon-at-phase", default=None,
                    help="SIGKILL memextd when the workload prints this phase and start a "
                         "new one; the workload must finish with every byte right")
    ap.add_argument("--min-agent-unshare-faults", type=int, default=0,
                    help="the test makes the shim's agent fault on purpose as it makes a page "
                         "exclusive: fail unless each client's agent_unshare_faults is at least "
                         "this and its agent_faults no more (default: fail unless both are 0)")
    ap.add_argument("--min-forks-shared", type=int, default=0,
                    help="fail unless totals.forks_shared grew by at least this much")
    ap.add_argument("--min-forks-drained", type=int, default=0,
                    help="fail unless totals.forks_drained grew by at least this much")
    ap.add_argument("--max-forks-drained", type=int, default=None,
                    help="fail if totals.forks_drained grew by more than this")
    ap.add_argument("--min-adopt-swap-pages", type=int, default=0,
                    help="with --kill-daemon-at-phase: the restarted memextd must adopt at "
                         "least this many pages in place in the swap area")
    ap.add_argument("--kill-at-phase", default=None,
                    help="SIGKILL the workload when it prints this phase (crash test)")
    ap.add_argument("--pswpout-after-phase", default=None,
                    help="also count pswpout from the moment the workload prints this phase")
    ap.add_argument("--min-pswpout-after", type=int, default=1,
                    help="pages pswpout must grow by after --pswpout-after-phase")
    ap.add_argument("--timeout", type=float, default=240, help="hang guard for the workload")
    ap.add_argument("--daemon-timeout", type=float, default=20)
    ap.add_argument("--exit-timeout", type=float, default=30,
                    help="hang guard for the daemon to drop an exited client")
    ap.add_argument("--with-jemalloc", action="store_true",
                    help="preload jemalloc after the shim (skip if it is not installed)")
    ap.add_argument("--mem-used-slack", type=int, default=0,
                    help="bytes store.mem_used_total may stay above its value before the test")
    ap.add_argument("--daemon-crashes-at", default=None,
                    help="run the first memextd with --crash-at POINT; when it has killed "
                         "itself, start a new one and check that the fork children (fork-*) "
                         "or the workloads were adopted")
    ap.add_argument("--agent-faults-slack", type=int, default=0,
                    help="faults of the agent allowed besides those counted as unsharing: "
                         "one a dead daemon read and never answered is read again by the next, "
                         "which cannot know the agent was unsharing")
    ap.add_argument("--expect-client-says", default=None, metavar="TEXT",
                    help="every workload's stderr must have a line containing TEXT")
    ap.add_argument("--config-set", action="append", default=[],
                    metavar="SECTION.KEY=VALUE",
                    help="a key of a memextd.conf made for the test (repeatable)")
    ap.add_argument("--restart-daemon-arg", action="append", default=[], metavar="ARG",
                    help="an argument for the daemons started after a crash only (after the "
                         "others: it wins)")
    ap.add_argument("--daemon-arg", action="append", default=[],
                    help="an extra memextd argument (repeatable), e.g. --daemon-arg=--compressor=zstd")
    ap.add_argument("--squeeze-while-stopped", type=int, default=None, metavar="PCT",
                    help="while the workload is stopped, the stand-in meminfo (needs "
                         "--system-available-pct) says PCT%% of memory is available")
    ap.add_argument("--continue-stopped-after", type=float, default=None, metavar="SECS",
                    help="SIGCONT a workload that stayed stopped this long (with "
                         "MEMEXT_TEST_STOP_AT_MOVE); it must have been seen stopped")
    ap.add_argument("--max-total", action="append", default=[], metavar="KEY=[OTHER+]N",
                    help="the daemon's totals.KEY must grow by at most N, or by at most N "
                         "more than totals.OTHER grew (repeatable)")
    ap.add_argument("--min-total", action="append", default=[], metavar="KEY=N",
                    help="the daemon's totals.KEY must grow by at least N (repeatable)")
    ap.add_argument("--max-workingset-refault", type=int, default=None,
                    help="totals.workingset_refault may grow by at most this many pages")
    ap.add_argument("--min-workingset-activate", type=int, default=None,
                    help="totals.workingset_activate must grow by at least this many pages")
    ap.add_argument("--rss-bound", default=None,
                    help="peak RssAnon allowed (size), instead of budget * 1.25 + 16 MiB: for runs "
                         "where eviction is meant to stop, e.g. at the store's limit")
    ap.add_argument("--make-swapfile", default=None, metavar="SIZE",
                    help="make a swap area of SIZE in the temp dir (memextctl mkswap) and hand "
                         "it to memextd with --swap-file; pick the store with "
                         "--daemon-arg=--store-backend=...")
    ap.add_argument("cmd", nargs="+")
    args = ap.parse_args()
    args.preload_also = []
    if args.with_jemalloc:
        lib = ctypes.util.find_library("jemalloc")
        if not lib:
            log("SKIP: jemalloc is not installed (apt-get install libjemalloc2)")
            return SKIP
        args.preload_also.append(lib)

    missing = missing_path(args, ("memextd", "memextctl", "shim", "probe"))
    if missing:
        log(f"FAIL [{args.name}]: {missing}")
        return 1
    raise_on_signals(signal.SIGTERM)

    tmp = tempfile.mkdtemp(prefix=f"memext-it-{args.name}-")
    try:
        run_probe(args.probe)
        if args.mode == "managed":
            test_managed(args, tmp)
        elif args.mode == "ctl-no-socket":
            test_ctl_no_socket(args, tmp)
        elif args.mode == "not-managed":
            test_not_managed(args, tmp)
        elif args.mode == "no-uffd":
            test_no_uffd(args, tmp)
        elif args.mode == "pid-namespace":
            test_pid_namespace(args, tmp)
        elif args.mode == "slow-hello":
            test_slow_hello(args, tmp)
        elif args.mode == "dies-at-stop":
            test_dies_at_stop(args, tmp)
        else:
            test_failopen(args, tmp)
    except TestFailure as e:
        log(f"FAIL [{args.name}]: {e}")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"PASS [{args.name}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
