#!/bin/sh
# Builds the Debian package from this source tree: copies the tree (without build
# directories) to a scratch directory, puts packaging/debian at debian/, and runs
# dpkg-buildpackage -b -us -uc there. The .deb files land in OUTDIR (default: the current
# directory). Needs dpkg-dev, debhelper and the Build-Depends of packaging/debian/control
# (dpkg-checkbuilddeps names any that are missing).
#   packaging/build-deb.sh [OUTDIR]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(realpath "${1:-.}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

mkdir "$work/memext"
(cd "$src" && tar --exclude='./build*' --exclude='./.git' --exclude='./debian' -cf - .) |
	(cd "$work/memext" && tar -xf -)
cp -r "$src/packaging/debian" "$work/memext/debian"
(cd "$work/memext" && dpkg-checkbuilddeps && dpkg-buildpackage -b -us -uc)
mkdir -p "$out"
cp "$work"/*.deb "$work"/*.buildinfo "$work"/*.changes "$out/"
ls -l "$out"/*.deb
