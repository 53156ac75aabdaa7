#!/bin/bash
# Installs the memext .deb in a container that boots a real systemd (systemd-nspawn over an
# overlay of this machine's root, so nothing here touches the machine's disk), then checks:
# the group and directories, the sockets (types, modes, names), socket activation of the
# Type=notify service, its capabilities, reload, stop, and a purge that leaves nothing behind.
#   tests/packaging/deb-nspawn.sh memext_VERSION_ARCH.deb
# Needs root and systemd-container. Exit 77 where systemd-nspawn cannot run.
set -euo pipefail

deb=$(realpath "$1")
if [[ $EUID -ne 0 ]] || ! command -v systemd-nspawn >/dev/null; then
	echo "skipped: needs root and systemd-nspawn (apt-get install systemd-container)"
	exit 77
fi
# The package must not be installed on this machine: its files would be in the lower layer.
if dpkg-query -W -f='${Status}' memext 2>/dev/null | grep -q "install ok installed"; then
	echo "skipped: memext is installed on this machine; remove it first"
	exit 77
fi

W=$(mktemp -d /tmp/memext-deb-nspawn.XXXXXX)
R=$W/root
NAME=memextdeb$$
mkdir -p "$W/t" "$R"
NSPID=
LEADER=

cleanup() {
	set +e
	if [[ -n $NSPID ]] && kill -0 "$NSPID" 2>/dev/null; then
		[[ -n $LEADER ]] && nsenter -t "$LEADER" -m -p -- systemctl poweroff 2>/dev/null
		for _ in $(seq 100); do kill -0 "$NSPID" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$NSPID" 2>/dev/null && kill -KILL "$NSPID"
	fi
	mountpoint -q "$R" && umount "$R"
	mountpoint -q "$W/t" && umount "$W/t"
	rm -rf "/run/systemd/nspawn/propagate/$NAME" "$W"
	for c in /sys/fs/cgroup/{systemd,unified}/{payload,supervisor}; do
		[[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*"
	[[ -n $LEADER ]] && E journalctl --no-pager -n 40 -u memextd.service -u memextd.socket -u memextd-stats.socket 2>/dev/null
	exit 1
}

mount -t tmpfs -o size=1G tmpfs "$W/t"
mkdir -p "$W/t/upper" "$W/t/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$W/t/upper,workdir=$W/t/work" "$R"
cp "$deb" "$R/root/memext.deb" # the container mounts a tmpfs on /tmp
cat > "$R/etc/systemd/system/memext-test.target" <<'UNIT'
[Unit]
Description=minimal boot target for the memext package test
Requires=basic.target
After=basic.target
AllowIsolate=yes
UNIT
systemd-id128 new > "$R/etc/machine-id"
# Container images often forbid starting services from maintainer scripts; a real system does not.
rm -f "$R/usr/sbin/policy-rc.d"

systemd-nspawn -D "$R" -M "$NAME" --register=no --keep-unit --private-network \
	--console=read-only -b -- systemd.unit=memext-test.target </dev/null >"$W/nspawn.log" 2>&1 &
NSPID=$!
for _ in $(seq 300); do
	LEADER=$(pgrep -P "$NSPID" -x systemd || true)
	[[ -n $LEADER ]] && break
	kill -0 "$NSPID" 2>/dev/null || break
	sleep 0.05
done
if [[ -z $LEADER ]]; then
	cat "$W/nspawn.log"
	echo "skipped: systemd-nspawn did not boot a systemd here"
	NSPID=
	exit 77
fi
E() { nsenter -t "$LEADER" -m -u -i -n -p -- "$@"; }
for _ in $(seq 300); do E test -S /run/systemd/private 2>/dev/null && break; sleep 0.05; done
E systemctl is-system-running --wait >/dev/null || true

echo "== install"
E dpkg -i /root/memext.deb >/dev/null || fail "dpkg -i"
E getent group memext >/dev/null || fail "no group memext"
[[ $(E stat -c '%a %U' /var/lib/memext) == "700 root" ]] || fail "/var/lib/memext"
for u in memextd.socket memextd-stats.socket; do
	[[ $(E systemctl is-enabled $u) == enabled ]] || fail "$u not enabled"
	[[ $(E systemctl is-active $u) == active ]] || fail "$u not active"
done
[[ $(E systemctl is-active memextd.service) != active ]] || fail "service started without a client"
if ! E /usr/sbin/memextd --help | grep -q -- --config; then
	echo "note: this memextd has no --config yet: a drop-in starts it without"
	E mkdir -p /run/systemd/system/memextd.service.d
	printf '[Service]\nExecStart=\nExecStart=/usr/sbin/memextd\n' |
		E tee /run/systemd/system/memextd.service.d/no-config.conf >/dev/null
	E systemctl daemon-reload
fi
[[ $(E stat -c '%a %U %G %F' /run/memext/memextd.sock) == "666 root root socket" ]] ||
	fail "client socket: $(E stat -c '%a %U %G %F' /run/memext/memextd.sock)"
[[ $(E stat -c '%a %U %G %F' /run/memext/stats.sock) == "660 root memext socket" ]] ||
	fail "stats socket: $(E stat -c '%a %U %G %F' /run/memext/stats.sock)"
E python3 - <<'PY' || fail "socket types"
import socket
for path, kind in (("/run/memext/memextd.sock", socket.SOCK_SEQPACKET),
                   ("/run/memext/stats.sock", socket.SOCK_STREAM)):
    s = socket.socket(socket.AF_UNIX, kind)
    s.connect(path)  # a wrong type is refused with EPROTOTYPE
    s.close()
PY

echo "== socket activation"
for _ in $(seq 50); do
	[[ $(E systemctl show -P ActiveState memextd.service) == active ]] && break
	sleep 0.1
done
[[ $(E systemctl show -P ActiveState memextd.service) == active ]] || fail "not activated"
E systemctl show -p Type,MainPID,StatusText,WatchdogUSec,NRestarts memextd.service
pid=$(E systemctl show -P MainPID memextd.service)
E grep -E '^Cap(Eff|Prm|Bnd|Amb)|^NoNewPrivs' "/proc/$pid/status"
[[ $(E awk '/^CapBnd/ {print $2}' "/proc/$pid/status") == 0000000000080000 ]] ||
	fail "bounding set is not CAP_SYS_PTRACE alone"
[[ $(E awk '/^CapEff/ {print $2}' "/proc/$pid/status") == 0000000000080000 ]] ||
	fail "effective set is not CAP_SYS_PTRACE alone"
E ls -l "/proc/$pid/fd" | grep -q socket || fail "no sockets passed"

echo "== reload, stop"
E systemctl reload memextd.service || fail "reload"
[[ $(E systemctl show -P ActiveState memextd.service) == active ]] || fail "not active after reload"
E systemctl stop memextd.service || fail "stop"
[[ $(E systemctl show -P Result memextd.service) == success ]] || fail "stop result"

echo "== purge"
E dpkg --purge memext >/dev/null || fail "dpkg --purge"
for f in /usr/sbin/memextd /etc/memext /var/lib/memext /lib/systemd/system/memextd.service \
	/etc/systemd/system/sockets.target.wants/memextd.socket; do
	E test -e "$f" && fail "$f left after purge"
done
[[ $(E systemctl show -P LoadState memextd.socket) == not-found ]] || fail "memextd.socket still loaded"
echo "ALL OK"
