#!/bin/bash
# Installs what building and testing memext needs, from Debian's archive. Idempotent: it
# touches apt only when a package is missing. Usage: scripts/deps.sh [--test]
set -euo pipefail

packages=(build-essential meson ninja-build pkg-config python3
	liblz4-dev libzstd-dev libsystemd-dev libcap-dev libinih-dev)
if [[ "${1:-}" == "--test" ]]; then
	# The test suite also runs util-linux's mkswap/blkid and systemd's tools.
	packages+=(util-linux systemd systemd-container libjemalloc2)
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	echo "memext: installing ${missing[*]}"
	if [[ $EUID -ne 0 ]]; then
		echo "memext: run as root (or install these packages yourself)" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
