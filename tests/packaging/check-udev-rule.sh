#!/bin/sh
# Checks the udev rule with 'udevadm verify' (systemd 254 and later), then that it gives the
# group memext rw access to the userfaultfd device and nothing else.
# Usage: check-udev-rule.sh RULES_FILE      Exit 77 where udevadm verify is not available.
set -u
rules=$1

# What the rule must say, whatever udevadm can do here.
if ! grep -q '^KERNEL=="userfaultfd", SUBSYSTEM=="misc", GROUP="memext", MODE="0660"$' "$rules"; then
	echo "FAIL: $rules does not grant the group memext rw access to /dev/userfaultfd"
	exit 1
fi
if [ "$(grep -cv '^\(#.*\)\{0,1\}$' "$rules")" != 1 ]; then
	echo "FAIL: $rules has more than the one rule"
	exit 1
fi

if ! command -v udevadm >/dev/null 2>&1 || ! udevadm verify --help >/dev/null 2>&1; then
	echo "skipped: udevadm verify is not available (udev from systemd 254 or later)"
	exit 77
fi
out=$(udevadm verify --no-style "$rules" 2>&1)
rc=$?
if [ $rc -ne 0 ]; then
	printf '%s\n' "$out"
	echo "FAIL: udevadm verify (exit $rc)"
	exit 1
fi
echo "ok: $rules"
