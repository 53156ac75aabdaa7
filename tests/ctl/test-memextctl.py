#!/usr/bin/env python3
"""memextctl against a real memextd with a real client: every command's output checked.

Starts memextd on sockets in a temp dir and a client (wl-random, paused after its fill at 4x
its budget, so it holds evicted pages), then checks stats (text, --json, --prometheus parsed
by a strict exposition-format parser, --classes), clients, top -n 2, drain PID (every page
back, progress line, evicted_pages 0 afterwards), and the errors: drain of a non-client, an
unknown command, a missing socket. Exit 77 when the kernel cannot run memext (uffd-probe).
"""
import json, os, re, signal, subprocess, sys, tempfile, time

memextd, memextctl, shim, probe, workload = sys.argv[1:6]

def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)

def ctl(*args, check=True):
    p = subprocess.run([memextctl, "--stats-socket", stats_sock, *args], capture_output=True,
                       text=True, timeout=60)
    if check and p.returncode != 0:
        fail(f"memextctl {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p

# Prometheus text exposition format 0.0.4, strictly: every sample's family has HELP and TYPE
# before it, names and labels are well formed, values parse, histograms are cumulative.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL})(?:,{LABEL})*\}})? (\S+)$")

def parse_prometheus(text):
    families, samples = {}, []
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP "):
            name = line.split()[2]
            families.setdefault(name, {})["help"] = True
        elif line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            if typ not in ("counter", "gauge", "histogram", "summary", "untyped"):
                fail(f"line {n}: unknown type {typ}")
            if "type" in families.get(name, {}):
                fail(f"line {n}: second TYPE for {name}")
            families.setdefault(name, {})["type"] = typ
        elif line.startswith("#") or not line:
            continue
        else:
            m = SAMPLE.match(line)
            if not m:
                fail(f"line {n} is not a valid sample: {line!r}")
            name, labels, value = m.group(1), m.group(2) or "", m.group(3)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            fam = families.get(name) or families.get(base)
            if not fam or "type" not in fam or "help" not in fam:
                fail(f"line {n}: sample {name} before its HELP and TYPE")
            try:
                v = float(value)
            except ValueError:
                fail(f"line {n}: value {value!r} is not a number")
            samples.append((name, labels, v))
    return families, samples

if subprocess.run([probe]).returncode == 77:
    print("SKIP: this kernel cannot run memext")
    sys.exit(77)

tmp = tempfile.mkdtemp(prefix="memext-ctl-")
sock, stats_sock = os.path.join(tmp, "memextd.sock"), os.path.join(tmp, "stats.sock")
log = open(os.path.join(tmp, "memextd.log"), "w")
daemon = subprocess.Popen([memextd, "--socket", sock, "--stats-socket", stats_sock],
                          stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
app = None
try:
    for _ in range(200):
        if os.path.exists(stats_sock):
            break
        time.sleep(0.05)
    env = dict(os.environ, LD_PRELOAD=shim, MEMEXT_SOCKET=sock, MEMEXT_BUDGET="16M")
    app = subprocess.Popen([workload, "64M", "1", "0", "--pause-after-fill"], env=env,
                           stdout=subprocess.PIPE, text=True)
    for line in app.stdout:
        if "phase filled" in line:
            break
    else:
        fail("the client never finished its fill")
    pid = app.pid
    deadline = time.time() + 30
    while True:
        j = json.loads(ctl("stats", "--json").stdout)
        me = [c for c in j["clients"] if c["pid"] == pid]
        if me and me[0]["evicted_pages"] > 8000:
            break
        if time.time() > deadline:
            fail(f"the client's pages were not evicted: {me}")
        time.sleep(0.1)
    c = me[0]
    for k in ("pid", "budget_bytes", "resident_pages", "evicted_pages", "pswpin", "pswpout",
              "faults", "fault_usec_p50", "fault_usec_p99"):
        if k not in c:
            fail(f"stats --json: client has no {k}")
    if c["budget_bytes"] != 16 << 20:
        fail(f"budget_bytes {c['budget_bytes']}")
    for k in ("orig_data_size", "compr_data_size", "mem_used_total"):
        if not j["store"].get(k):
            fail(f"stats --json: store.{k} missing or 0 with pages stored")
    if j["store"]["orig_data_size"] < c["evicted_pages"] * 4096:
        fail("orig_data_size smaller than the evicted pages")

    text = ctl("stats").stdout
    for want in (str(pid), "mem_used_total", "faults:", "reclaim:"):
        if want not in text:
            fail(f"stats (text) lacks {want!r}:\n{text}")

    fams, samples = parse_prometheus(ctl("stats", "--prometheus").stdout)
    for f in ("memext_clients", "memext_pswpout_total", "memext_store_mem_used_bytes",
              "memext_fault_duration_seconds", "memext_client_evicted_bytes"):
        if f not in fams:
            fail(f"prometheus: no family {f}")
    ev = [v for n, l, v in samples if n == "memext_client_evicted_bytes" and f'pid="{pid}"' in l]
    if not ev or ev[0] < 8000 * 4096:
        fail(f"prometheus: memext_client_evicted_bytes for {pid}: {ev}")
    buckets = [(l, v) for n, l, v in samples if n == "memext_fault_duration_seconds_bucket"]
    counts = [v for _, v in buckets]
    if counts != sorted(counts) or 'le="+Inf"' not in buckets[-1][0]:
        fail("prometheus: histogram buckets not cumulative or no +Inf bucket last")
    total = [v for n, l, v in samples if n == "memext_fault_duration_seconds_count"]
    if not total or total[0] != counts[-1] or total[0] <= 0:
        fail("prometheus: _count differs from the +Inf bucket")

    classes = ctl("stats", "--classes").stdout.splitlines()
    if not classes[0].split()[:2] == ["SIZE", "PAGES"] or len(classes) < 2:
        fail(f"stats --classes: {classes[:3]}")

    clients = ctl("clients").stdout
    if not re.search(rf"^\s*{pid}\s+wl-random", clients, re.M):
        fail(f"clients lacks {pid}:\n{clients}")
    top = ctl("top", "-n", "2").stdout
    if top.count("memextctl top") != 2 or str(pid) not in top or "FAULTS/S" not in top:
        fail(f"top -n 2:\n{top}")

    d = ctl("drain", str(pid))
    if "draining" not in d.stderr or "every page is back" not in d.stdout:
        fail(f"drain: stdout {d.stdout!r} stderr {d.stderr!r}")
    j = json.loads(ctl("stats", "--json").stdout)
    me = [c for c in j["clients"] if c["pid"] == pid][0]
    if me["evicted_pages"] != 0 or me["state"] != "drained":
        fail(f"after drain: {me}")

    p = ctl("drain", "1", check=False)
    if p.returncode != 1 or "not a memext client" not in p.stderr:
        fail(f"drain 1: exit {p.returncode}, {p.stderr!r}")
    p = ctl("frobnicate", check=False)
    if p.returncode != 2:
        fail(f"unknown command: exit {p.returncode}")
    p = subprocess.run([memextctl, "--stats-socket", os.path.join(tmp, "none"), "stats"],
                       capture_output=True, text=True)
    if p.returncode != 1 or "cannot connect" not in p.stderr:
        fail(f"missing socket: exit {p.returncode}, {p.stderr!r}")
    print("PASS: stats, --json, --prometheus, --classes, clients, top, drain and errors")
finally:
    if app:
        app.kill()
        app.wait()
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()
    subprocess.run(["rm", "-rf", tmp])
