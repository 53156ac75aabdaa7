#!/bin/sh
# systemd-analyze verify on memext's units; ANY output fails, since verify exits 0 on unknown
# keys and bad values. The units are copies whose ExecStart= names the memextd of this build
# (tests/packaging/meson.build), so the check that the binary exists is real. Documentation=
# is checked against this build's man pages, and a deliberately broken copy must be reported,
# so a verify that checks nothing cannot pass.
#
# Usage: verify-units.sh UNIT... -- MANPAGE...        Exit 77 without systemd-analyze.
set -u

if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "skipped: systemd-analyze is not installed (apt-get install systemd)"
	exit 77
fi

units=""
pages=""
after_sep=0
for arg in "$@"; do
	if [ "$arg" = "--" ]; then
		after_sep=1
	elif [ "$after_sep" = 0 ]; then
		units="$units $arg"
	else
		pages="$pages $arg"
	fi
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
mkdir "$tmp/units" "$tmp/broken" "$tmp/man"
names=""
for u in $units; do
	cp "$u" "$tmp/units/"
	cp "$u" "$tmp/broken/"
	names="$names $(basename "$u")"
done

man_opt=--man=yes
if command -v man >/dev/null 2>&1; then
	for p in $pages; do
		if [ ! -f "$p" ]; then
			echo "FAIL: man page $p was not built"
			exit 1
		fi
		section=${p##*.}
		mkdir -p "$tmp/man/man$section"
		ln -s "$(realpath "$p")" "$tmp/man/man$section/"
	done
	MANPATH="$tmp/man"
	export MANPATH
else
	echo "note: man is not installed, so Documentation= is not checked"
	man_opt=--man=no
fi

verify() { # DIR: prints systemd-analyze's output and its exit status
	(cd "$1" && SYSTEMD_UNIT_PATH="$1:" systemd-analyze verify "$man_opt" $names 2>&1
	 echo "exit status $?")
}

out=$(verify "$tmp/units")
if [ "$out" != "exit status 0" ]; then
	printf '%s\n' "$out"
	echo "FAIL: systemd-analyze verify is not silent on:$names"
	exit 1
fi

# The same units with a typo and a missing binary must not pass.
sed -i -e 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/memextd|' \
	-e 's|^NoNewPrivileges=|NoNewPrivilege=|' "$tmp/broken/memextd.service"
out=$(verify "$tmp/broken")
case "$out" in
*nonexistent*NoNewPrivilege* | *NoNewPrivilege*nonexistent*) ;;
*)
	printf '%s\n' "$out"
	echo "FAIL: systemd-analyze verify did not report a broken copy: this check proves nothing here"
	exit 1
	;;
esac

echo "ok: systemd-analyze verify is silent on:$names (and reports a broken copy)"
