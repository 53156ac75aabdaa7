#!/bin/bash
# memextd under a real systemd 252: boots systemd as PID 1 of a systemd-nspawn container whose
# root is an overlay of this machine's / (upper layer on a tmpfs, so nothing touches the
# machine's disk; see ../shared/recipes/systemd-nspawn/), installs this build into it with
# `meson install --destdir`, and checks:
#   1. `systemctl start memextd.socket`: both sockets listen (types, modes), no daemon yet;
#   2. memext-demo under the shim at 4x its budget (MEMEXT_BUDGET=32M, 128M), every byte
#      verified: its connection starts memextd (Type=notify, active, started once), pswpout
#      through `memextctl stats --json`, `systemctl status` shows the STATUS= line;
#   3. hardening as applied: CapEff/CapPrm/CapBnd = CAP_SYS_PTRACE alone, CapInh/CapAmb empty,
#      NoNewPrivs 1, a seccomp filter, oom_score_adj -1000 (where this machine grants
#      CAP_SYS_RESOURCE at all; else only OOMScoreAdjust=-1000 of the unit, with a NOTE);
#   4. `systemctl reload` with a changed config ("configuration reloaded" with the new values),
#      then with an invalid one ("reload refused" naming file, line and key; the same daemon
#      goes on with the old configuration: a client without MEMEXT_BUDGET gets the
#      default-budget of the last good file, not of the refused one);
#   5. `systemctl stop memextd` while a client (sd-holder) holds evicted pages: the journal
#      says "stopping: giving every client its pages back", the stop succeeds, the idle client
#      is fully resident afterwards, keeps running and verifies every byte;
#   and over the whole run: no complaint of systemd about the units, no watchdog timeout, no
#   restart.
#
#   nspawn-memextd.sh BUILD_ROOT MESON MEMEXT_DEMO SD_HOLDER
#
# Exit 0 pass, 1 fail, 77 skipped where systemd-nspawn cannot run here (says why). Needs root;
# installs systemd-container with apt-get if nspawn is missing. Everything it creates
# (container, overlay, tmpfs, its own cgroups, nspawn's propagate dir) is removed on every exit,
# also on failure or SIGTERM. MEMEXT_SD_HOLD=1 keeps the container on a failure for debugging
# (the script says how to release it). Takes ~25 s on an idle 2-vCPU VM.
set -euo pipefail
unset LD_LIBRARY_PATH # meson test's, pointing at the build dir (not visible in the container)

BUILD=$(realpath "$1")
MESON=$2
DEMO=$(realpath "$3")
HOLDER=$(realpath "$4")

BUDGET=32M
FOOTPRINT=128M
FOOTPRINT_KB=$((128 * 1024))
# As the integration harness: resident memory bounded by budget * 1.25 + 16 MiB = 56 MiB, so
# at least (128 - 56) MiB must have been evicted.
MIN_PSWPOUT=$(((128 - 56) * 256))
CSOCK=/run/memext/memextd.sock
TESTDIR=/opt/memext-systemd-test # in the container

T0=$(date +%s.%N)
el() { printf '%6.1fs' "$(echo "$(date +%s.%N) - $T0" | bc)"; }
say() { echo "[$(el)] $*"; }
skip() {
	echo "SKIP: $*"
	exit 77
}

[[ $EUID -eq 0 ]] || skip "systemd-nspawn needs root"
if ! command -v systemd-nspawn >/dev/null; then
	say "systemd-nspawn missing: apt-get install -y systemd-container"
	timeout 300 apt-get install -y systemd-container >/dev/null 2>&1 ||
		skip "systemd-nspawn is not installed and 'apt-get install systemd-container' failed"
fi
command -v nsenter >/dev/null || skip "nsenter (util-linux) missing"
[[ -x $MESON ]] || MESON=$(command -v meson) || skip "meson not found for meson install"

W=$(mktemp -d /tmp/memext-systemd-test.XXXXXX)
R=$W/root
NAME=memextsd$$
NSPID=
LEADER=
# nspawn runs in cgroups of its own (it puts the container below the cgroup it starts in), so
# that neither a container of someone else nor their leftovers share ours, and cleanup removes
# exactly ours.
CGROUPS=()
for h in systemd unified; do
	[[ -f /sys/fs/cgroup/$h/cgroup.procs ]] && CGROUPS+=("/sys/fs/cgroup/$h/$NAME")
done
[[ -f /sys/fs/cgroup/cgroup.procs && ! -d /sys/fs/cgroup/unified ]] && CGROUPS+=("/sys/fs/cgroup/$NAME")
mkdir -p "$W/t" "$R"

cleanup() {
	local rc=$?
	set +e
	if [[ -n $NSPID ]] && kill -0 "$NSPID" 2>/dev/null; then
		[[ -n $LEADER ]] && timeout 20 nsenter -t "$LEADER" -m -p -- systemctl poweroff 2>/dev/null
		for _ in $(seq 150); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$NSPID" 2>/dev/null && kill -KILL "$NSPID" # only our own nspawn, by pid
	fi
	# A killed nspawn leaves its container running: killing the container's init (by pid)
	# ends its whole pid namespace.
	[[ -n $LEADER ]] && kill -0 "$LEADER" 2>/dev/null && kill -KILL "$LEADER"
	[[ -n $NSPID ]] && wait "$NSPID" 2>/dev/null
	for _ in $(seq 50); do
		mountpoint -q "$R" || break
		umount "$R" 2>/dev/null || sleep 0.1
	done
	mountpoint -q "$R" && umount -l "$R"
	mountpoint -q "$W/t" && umount "$W/t"
	rm -rf "/run/systemd/nspawn/propagate/$NAME" "$W"
	# The cgroups nspawn made below our own (payload, supervisor and the container's tree).
	for c in "${CGROUPS[@]}"; do
		[[ -d $c ]] || continue
		for _ in $(seq 50); do
			find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
			[[ -d $c ]] || break
			sleep 0.1
		done
	done
	exit $rc
}
trap cleanup EXIT
trap 'exit 1' INT TERM

E() { timeout 120 nsenter -t "$LEADER" -m -u -i -n -p -- "$@"; }
journal() { E journalctl --no-pager -o cat -u memextd.service; }
fail() {
	echo "FAIL: $*"
	if [[ -n ${MEMEXT_SD_HOLD:-} && -n $LEADER ]]; then # debugging: keep the container
		touch "$W/hold"
		echo "holding: container leader $LEADER; rm $W/hold to clean up"
		while [[ -e $W/hold ]]; do sleep 1; done
	fi
	if [[ -n $LEADER ]]; then
		echo "--- systemctl status memextd"
		E systemctl status --no-pager -l memextd.service memextd.socket memextd-stats.socket
		echo "--- journal (memextd, sockets, holder)"
		E journalctl --no-pager -n 60 -u memextd.service -u memextd.socket \
			-u memextd-stats.socket -u memext-holder.service
		E test -f /run/memext-holder.log && { echo "--- holder"; E tail -5 /run/memext-holder.log; }
	fi
	exit 1
}
# wait_for SECONDS COMMAND...: poll (every 0.1 s) until COMMAND succeeds.
wait_for() {
	local end=$(($(date +%s) + $1))
	shift
	until "$@"; do
		(($(date +%s) < end)) || return 1
		sleep 0.1
	done
}
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
prop() { E systemctl show -P "$1" "$2"; }
# Greps on captured text: `cmd | grep -q` fails under pipefail when grep exits first.
has() { grep -qE -- "$1" <<<"$2"; }
journal_count() { grep -cF -- "$1" <<<"$(journal)" || true; }

# ---- overlay root, this build installed into it -------------------------------------------
mount -t tmpfs -o size=2G tmpfs "$W/t"
mkdir -p "$W/t/upper" "$W/t/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$W/t/upper,workdir=$W/t/work" "$R" ||
	skip "cannot mount an overlay of / (is / an overlay itself?)"
# The container mounts a tmpfs on /tmp (and /run), so the build dir may not be visible
# inside: install (and copy the test programs) into the overlay.
"$MESON" install -C "$BUILD" --no-rebuild --quiet --destdir "$R" >"$W/install.log" 2>&1 ||
	{ cat "$W/install.log"; fail "meson install --destdir"; }
mkdir -p "$R$TESTDIR"
install -m755 "$DEMO" "$HOLDER" "$R$TESTDIR/"
# A memext installed on this machine (the .deb) must not interfere: no unit of it enabled.
rm -f "$R"/etc/systemd/system/sockets.target.wants/memextd*.socket
cat >"$R/etc/systemd/system/memext-test.target" <<'UNIT'
[Unit]
Description=minimal boot target for the memext systemd test
Requires=basic.target
After=basic.target
AllowIsolate=yes
UNIT
systemd-id128 new >"$R/etc/machine-id"

# ---- boot -------------------------------------------------------------------------------
# CAP_SYS_RESOURCE, which nspawn drops by default, lets the container's systemd apply
# OOMScoreAdjust=-1000 (without it systemd ignores the EPERM, "assuming containerized
# execution") and LimitMEMLOCK=infinity, as it does on a real machine.
for c in "${CGROUPS[@]}"; do mkdir -p "$c"; done
(
	for c in "${CGROUPS[@]}"; do echo $BASHPID >"$c/cgroup.procs"; done
	exec systemd-nspawn -D "$R" -M "$NAME" --register=no --keep-unit --private-network \
		--capability=CAP_SYS_RESOURCE --console=read-only -b -- systemd.unit=memext-test.target
) </dev/null >"$W/nspawn.log" 2>&1 &
NSPID=$!
for _ in $(seq 300); do
	LEADER=$(pgrep -P "$NSPID" -x systemd || true)
	[[ -n $LEADER ]] && break
	kill -0 "$NSPID" 2>/dev/null || break
	sleep 0.05
done
if [[ -z $LEADER ]]; then
	cat "$W/nspawn.log"
	NSPID=
	skip "systemd-nspawn did not boot a systemd here (log above)"
fi
wait_for 15 E test -S /run/systemd/private || fail "no systemd manager socket in the container"
state=$(E systemctl is-system-running --wait || true)
ver=$(E systemctl --version)
say "booted: ${ver%%$'\n'*}, state $state"

# The package's post-install steps, as the .deb's maintainer scripts do them.
E systemd-sysusers memext.conf || fail "systemd-sysusers memext.conf"
E systemd-tmpfiles --create memext.conf || fail "systemd-tmpfiles --create memext.conf"
E ldconfig || fail "ldconfig" # libmemext.so below /usr/local: LD_PRELOAD=libmemext.so finds it
E systemctl daemon-reload
EXEC=$(prop ExecStart memextd.service)
CONF=$(sed -n 's/.*argv\[\]=[^;]* --config \([^ ;]*\).*/\1/p' <<<"$EXEC")
[[ -n $CONF ]] || fail "no --config in ExecStart: $EXEC"
E test -f "$CONF" || fail "the unit's configuration $CONF is not installed"
say "installed: $(prop FragmentPath memextd.service), configuration $CONF"
# What the real systemd said while loading the units (unknown keys, bad values, ...).
if grep -E "memext[^ ]*\.(service|socket):[0-9]+: " <<<"$(E journalctl -b --no-pager -o cat)"; then
	fail "systemd complains about the units"
fi
APP_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
	LD_PRELOAD=libmemext.so "MEMEXT_SOCKET=$CSOCK")

# ---- 1. socket activation by the first client, Type=notify ---------------------------------
say "1. socket activation"
E systemctl start memextd.socket
for u in memextd.socket memextd-stats.socket; do
	wait_for 5 eval '[[ $(E systemctl is-active $u) == active ]]' || fail "$u not active"
done
[[ $(E systemctl is-active memextd.service) != active ]] || fail "memextd started before any client"
[[ $(E stat -c '%a %U %G %F' $CSOCK) == "666 root root socket" ]] ||
	fail "client socket: $(E stat -c '%a %U %G %F' $CSOCK)"
[[ $(E stat -c '%a %U %G %F' /run/memext/stats.sock) == "660 root memext socket" ]] ||
	fail "stats socket: $(E stat -c '%a %U %G %F' /run/memext/stats.sock)"
say "   sockets listening, memextd.service $(prop ActiveState memextd.service)"

# ---- 2. an application at 4x its budget: its connection starts the daemon ------------------
say "2. memext-demo $FOOTPRINT under the shim, MEMEXT_BUDGET=$BUDGET (the first client)"
rc=0
out=$(E timeout 100 "${APP_ENV[@]}" MEMEXT_BUDGET=$BUDGET "$TESTDIR/memext-demo" $FOOTPRINT 2>&1) || rc=$?
((rc == 0)) || { echo "$out"; fail "memext-demo exited $rc"; }
sed 's/^/    /' <<<"$out"
has "all 32768 pages verified" "$out" || fail "memext-demo did not verify every page"
[[ $(prop ActiveState memextd.service) == active ]] || fail "memextd not active after its first client"
[[ $(prop Type memextd.service) == notify ]] || fail "Type is not notify"
(($(journal_count "Started memextd.service") == 1)) || fail "memextd was not started exactly once"
PID=$(prop MainPID memextd.service)
[[ $PID -gt 0 ]] || fail "no MainPID"
has socket: "$(E ls -l "/proc/$PID/fd")" || fail "no sockets passed to memextd"
stats=$(E memextctl stats --json) || fail "memextctl stats --json"
pswpout=$(jget 'd["totals"]["pswpout"]' <<<"$stats") || fail "stats --json is not JSON: $stats"
say "   memextd pid $PID started by the connection; memextctl stats --json: pswpout $pswpout" \
	"(at least $MIN_PSWPOUT), clients_seen $(jget 'd["totals"]["clients_seen"]' <<<"$stats")"
((pswpout >= MIN_PSWPOUT)) || fail "pswpout is $pswpout only"
status_line() { [[ $(prop StatusText memextd.service) =~ ^[0-9]+\ clients?,\ .+\ evicted\ in\ .+$ ]]; }
wait_for 5 status_line || fail "STATUS= is '$(prop StatusText memextd.service)'"
st=$(E systemctl status --no-pager memextd.service)
grep -E '^ *(Loaded|Active|TriggeredBy|Status|Main PID):' <<<"$st" | sed 's/^/    /'
has 'Status: "[0-9]+ clients?, .* evicted in ' "$st" || fail "systemctl status shows no STATUS line"
say "   watchdog $(prop WatchdogUSec memextd.service)"

# ---- 3. hardening --------------------------------------------------------------------------
say "3. hardening of pid $PID"
st=$(E cat "/proc/$PID/status")
grep -E '^(Cap|NoNewPrivs|Seccomp:)' <<<"$st" | sed 's/^/    /'
for k in CapEff CapPrm CapBnd; do
	v=$(awk -v k="$k:" '$1 == k {print $2}' <<<"$st")
	[[ $v == 0000000000080000 ]] || fail "$k is $v, not CAP_SYS_PTRACE alone (0000000000080000)"
done
for k in CapInh CapAmb; do
	v=$(awk -v k="$k:" '$1 == k {print $2}' <<<"$st")
	[[ $v == 0000000000000000 ]] || fail "$k is $v, not empty"
done
[[ $(awk '$1 == "NoNewPrivs:" {print $2}' <<<"$st") == 1 ]] || fail "NoNewPrivs is not 1"
[[ $(awk '$1 == "Seccomp:" {print $2}' <<<"$st") == 2 ]] || fail "no seccomp filter"
oom=$(E cat "/proc/$PID/oom_score_adj")
[[ $(prop OOMScoreAdjust memextd.service) == -1000 ]] || fail "OOMScoreAdjust is not -1000"
# Lowering oom_score_adj needs CAP_SYS_RESOURCE, in the container's systemd too; where this
# machine withholds it (a sandbox), systemd ignores the EPERM ("assuming containerized
# execution") and the check can only be that the unit asks for it.
bnd=$(awk '$1 == "CapBnd:" {print $2}' "/proc/$LEADER/status")
if (((0x$bnd >> 24) & 1)); then
	[[ $oom == -1000 ]] || fail "oom_score_adj is $oom, not -1000"
	say "   oom_score_adj $oom"
else
	say "   NOTE: oom_score_adj $oom: this machine withholds CAP_SYS_RESOURCE" \
		"(bounding set $(awk '$1 == "CapBnd:" {print $2}' /proc/self/status)), so no systemd" \
		"can apply OOMScoreAdjust=-1000 here; the unit sets it"
fi

# ---- 4. reload -------------------------------------------------------------------------------
say "4. reload"
printf '[daemon]\nlog-level = debug\n\n[reclaim]\ndefault-budget = %s\n' $BUDGET >"$R/root/good.conf"
printf '[daemon]\nlog-level = loud\n\n[reclaim]\ndefault-budget = 8M\n' >"$R/root/bad.conf"
E memextd --check-config /root/good.conf >/dev/null || fail "--check-config refuses good.conf"
if E memextd --check-config /root/bad.conf >/dev/null 2>&1; then fail "--check-config accepts bad.conf"; fi
E cp /root/good.conf "$CONF"
n0=$(journal_count "configuration reloaded")
E systemctl reload memextd.service || fail "systemctl reload"
reloaded() { (($(journal_count "configuration reloaded") > n0)); }
wait_for 10 reloaded || fail "no 'configuration reloaded' in the journal"
line=$(grep "configuration reloaded" <<<"$(journal)" | tail -1)
echo "    $line"
has " log-level=debug .*default-budget=$BUDGET " "$line" || fail "the reload did not apply good.conf"
[[ $(prop ActiveState memextd.service) == active && $(prop MainPID memextd.service) == "$PID" ]] ||
	fail "not the same active daemon after the reload"
E cp /root/bad.conf "$CONF"
E systemctl reload memextd.service || fail "systemctl reload (invalid file)"
refused() { (($(journal_count "reload refused") > 0)); }
wait_for 10 refused || fail "no 'reload refused' in the journal"
line=$(grep "reload refused" <<<"$(journal)" | tail -1)
echo "    $line"
has "$CONF:2: .*log-level.*loud" "$line" || fail "the refusal does not name file, line and key"
[[ $(prop ActiveState memextd.service) == active && $(prop MainPID memextd.service) == "$PID" ]] ||
	fail "not the same active daemon after the refused reload"
E cp /root/good.conf "$CONF" # back on disk, not reloaded: the daemon must still run good.conf

# ---- 5. stop with a client holding evicted pages ------------------------------------------
say "5. stop while sd-holder $FOOTPRINT runs (no MEMEXT_BUDGET: default-budget of the kept config)"
E systemd-run --quiet --unit=memext-holder -p RemainAfterExit=yes -p RuntimeMaxSec=100 \
	-p StandardOutput=append:/run/memext-holder.log -p StandardError=append:/run/memext-holder.log \
	-E LD_PRELOAD=libmemext.so -E MEMEXT_SOCKET=$CSOCK "$TESTDIR/sd-holder" $FOOTPRINT ||
	fail "systemd-run sd-holder"
HPID=$(prop MainPID memext-holder.service)
holder_says() { has "$1" "$(E cat /run/memext-holder.log)"; }
wait_for 60 holder_says "pass 1 ok" || fail "sd-holder made no pass"
client() { E memextctl stats --json | jget "[c for c in d['clients'] if c['pid'] == $HPID][0]$1"; }
budget=$(client '["budget_bytes"]') || fail "sd-holder (pid $HPID) is not a client"
[[ $budget == $((32 << 20)) ]] ||
	fail "sd-holder's budget is $budget: not default-budget=$BUDGET of the last valid config"
E systemctl kill -s USR1 memext-holder.service
wait_for 20 holder_says idle || fail "sd-holder did not go idle"
sleep 1.2 # a STATUS= tick with the idle client
st=$(E systemctl status --no-pager memextd.service)
grep 'Status:' <<<"$st" | sed 's/^/    /'
has 'Status: "1 client, .* evicted in ' "$st" || fail "STATUS does not show the client"
evicted=$(client '["evicted_pages"]')
hp_out=$(client '["pswpout"]')
rss0=$(E awk '$1 == "RssAnon:" {print $2}' "/proc/$HPID/status")
say "   sd-holder pid $HPID idle: budget $budget, evicted $evicted pages, pswpout $hp_out, RssAnon $rss0 kB"
((evicted > 0 && hp_out > 0)) || fail "nothing of sd-holder is evicted: the stop would prove nothing"
n0=$(journal_count "stopping: giving every client its pages back")
t=$(date +%s.%N)
E systemctl stop memextd.service || fail "systemctl stop memextd"
say "   stop took $(echo "$(date +%s.%N) - $t" | bc | xargs printf '%.2f') s"
(($(journal_count "stopping: giving every client its pages back") > n0)) ||
	fail "no 'stopping: giving every client its pages back' in the journal"
grep -E "stopping|stopped" <<<"$(journal)" | tail -3 | sed 's/^/    /'
[[ $(prop Result memextd.service) == success ]] ||
	fail "stop result $(prop Result memextd.service), status $(prop ExecMainStatus memextd.service)"
[[ $(prop ExecMainStatus memextd.service) == 0 ]] || fail "memextd exited $(prop ExecMainStatus memextd.service)"
if [[ $(prop SubState memext-holder.service) != running ]] || ! E kill -0 "$HPID"; then
	fail "sd-holder did not survive the stop"
fi
rss1=$(E awk '$1 == "RssAnon:" {print $2}' "/proc/$HPID/status")
say "   sd-holder still running, RssAnon $rss0 -> $rss1 kB without touching its memory"
((rss1 >= FOOTPRINT_KB)) || fail "only $rss1 kB resident after the stop: pages were not given back"
E systemctl kill -s USR2 memext-holder.service
holder_done() { [[ $(prop SubState memext-holder.service) != running ]]; }
wait_for 60 holder_done || fail "sd-holder did not finish after the stop"
E tail -2 /run/memext-holder.log | sed 's/^/    /'
[[ $(prop ExecMainStatus memext-holder.service) == 0 ]] ||
	fail "sd-holder exited $(prop ExecMainStatus memext-holder.service)"
holder_says "all 32768 pages verified" || fail "sd-holder did not verify its pages"

# ---- the whole run ---------------------------------------------------------------------------
[[ $(prop NRestarts memextd.service) == 0 ]] || fail "memextd was restarted $(prop NRestarts memextd.service) times"
if grep -E "Watchdog timeout|dumped core|Failed with result" <<<"$(journal)"; then
	fail "the journal shows a failure of memextd"
fi
t=$(date +%s.%N)
E systemctl poweroff
wait "$NSPID" || true
NSPID=
say "powered off in $(echo "$(date +%s.%N) - $t" | bc | xargs printf '%.2f') s"
say "ALL OK"
