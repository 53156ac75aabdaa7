#!/bin/sh
# The shipped config/memextd.conf must be exactly what the key table in daemon/config.c
# generates, so that the file documents every key with its current default.
# Usage: check-generated-config.sh GEN_CONFIG_DOCS SHIPPED_CONF
set -u
gen=$1
shipped=$2
if ! "$gen" conf | diff -u "$shipped" -; then
	echo "FAIL: $shipped is out of date; regenerate it with: $gen conf > config/memextd.conf"
	exit 1
fi
echo "ok: $shipped is what the key table generates"
