#!/bin/sh
# Formats each man page with groff and lints it with mandoc where installed; any warning fails.
# Usage: check-man-pages.sh PAGE...        Exit 77 when neither groff nor mandoc is installed.
set -u

have_groff=0
have_mandoc=0
command -v groff >/dev/null 2>&1 && have_groff=1
command -v mandoc >/dev/null 2>&1 && have_mandoc=1
if [ $have_groff = 0 ] && [ $have_mandoc = 0 ]; then
	echo "skipped: neither groff nor mandoc is installed"
	exit 77
fi

status=0
for page in "$@"; do
	if [ ! -s "$page" ]; then
		echo "FAIL: $page is missing or empty"
		status=1
		continue
	fi
	if grep -n '@[A-Z_]*@' "$page"; then
		echo "FAIL: $page: a template placeholder was left"
		status=1
	fi
	if [ $have_groff = 1 ]; then
		out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1)
		if [ -n "$out" ]; then
			printf '%s\n' "$out"
			echo "FAIL: groff warns about $page"
			status=1
		fi
	fi
	if [ $have_mandoc = 1 ]; then
		out=$(mandoc -Tlint -Wwarning "$page" 2>&1)
		if [ -n "$out" ]; then
			printf '%s\n' "$out"
			echo "FAIL: mandoc warns about $page"
			status=1
		fi
	fi
	[ $status = 0 ] && echo "ok: $page"
done
exit $status
