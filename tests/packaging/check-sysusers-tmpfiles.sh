#!/bin/sh
# Applies memext's sysusers.d and tmpfiles.d entries to a scratch root, as the package's
# postinst and boot do, and checks the outcome: the group memext, /run/memext 0755 and
# /var/lib/memext 0700. Any warning fails.
# Usage: check-sysusers-tmpfiles.sh SYSUSERS_CONF TMPFILES_CONF
#        Exit 77 without systemd-sysusers or systemd-tmpfiles.
set -u
sysusers=$1
tmpfiles=$2

for tool in systemd-sysusers systemd-tmpfiles; do
	if ! command -v $tool >/dev/null 2>&1; then
		echo "skipped: $tool is not installed (apt-get install systemd)"
		exit 77
	fi
done

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT INT TERM
mkdir -p "$root/etc"
status=0

out=$(systemd-sysusers --root="$root" "$sysusers" 2>&1)
rc=$?
# sysusers reports what it creates; anything else is a warning or an error.
rest=$(printf '%s\n' "$out" | grep -v "^Creating group '\{0,1\}memext'\{0,1\} with [gG][iI][dD] [0-9]*\.$" | grep -v '^$')
if [ $rc -ne 0 ] || [ -n "$rest" ]; then
	printf '%s\n' "$out"
	echo "FAIL: systemd-sysusers (exit $rc)"
	status=1
fi
if ! grep -q '^memext:x:[0-9]*:$' "$root/etc/group"; then
	echo "FAIL: no group memext in the scratch root's /etc/group:"
	cat "$root/etc/group"
	status=1
fi

out=$(systemd-tmpfiles --root="$root" --create "$tmpfiles" 2>&1)
rc=$?
if [ $rc -ne 0 ] || [ -n "$out" ]; then
	printf '%s\n' "$out"
	echo "FAIL: systemd-tmpfiles --create (exit $rc)"
	status=1
fi
for spec in "run/memext 755" "var/lib/memext 700"; do
	path=${spec% *}
	mode=${spec#* }
	got=$(stat -c '%a %U' "$root/$path" 2>/dev/null)
	if [ "$got" != "$mode root" ]; then
		echo "FAIL: $path is '$got', expected '$mode root'"
		status=1
	fi
done

[ $status = 0 ] && echo "ok: group memext, /run/memext 0755, /var/lib/memext 0700"
exit $status
