#!/bin/bash
# SPDX-License-Identifier: MIT
#
# bench/real-apps/mariadb.sh ROWS POOL_MIB: a MariaDB server of its own in a temp dir (as
# root, no networking), a buffer pool of POOL_MIB, a table of ROWS rows generated in SQL (as
# tests/e2e/test_mariadb.py's), then a full scan, a range scan through the secondary index
# and a scan of that index; prints their answers on one line and removes everything. Run by
# run.sh under each configuration: the server inherits the cgroup or LD_PRELOAD.
set -euo pipefail

ROWS=$1
POOL=$2
DIR=$(mktemp -d /tmp/memext-bench-mariadb.XXXXXX)
SOCK=$DIR/mariadb.sock
SERVER=
cleanup() {
	[ -n "$SERVER" ] && kill -KILL "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
	rm -rf "$DIR"
}
trap cleanup EXIT

q() { mariadb -S "$SOCK" -uroot -N -B -e "$1"; }

mariadb-install-db --no-defaults --datadir="$DIR/data" --user=root \
	--auth-root-authentication-method=normal >"$DIR/install.log" 2>&1 ||
	{ cat "$DIR/install.log" >&2; exit 1; }
mariadbd --no-defaults --datadir="$DIR/data" --user=root --socket="$SOCK" --skip-networking \
	--pid-file="$DIR/mariadb.pid" --innodb-buffer-pool-size="${POOL}M" \
	--innodb-log-file-size=64M --innodb-flush-log-at-trx-commit=0 --skip-log-bin \
	--log-error="$DIR/mariadb.err" &
SERVER=$!
for _ in $(seq 600); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$DIR/mariadb.err" >&2; exit 1; }
q "CREATE DATABASE t"
q "CREATE TABLE t.big (id INT PRIMARY KEY, k INT, s CHAR(192), KEY(k)) ENGINE=InnoDB"
q "SET SESSION max_recursive_iterations=$((ROWS + 1));
   INSERT INTO t.big WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM seq
   WHERE n < $ROWS) SELECT n, n*7919 % 100003,
   CONCAT(MD5(n), MD5(n+1), MD5(n+2), MD5(n+3), MD5(n+4), MD5(n+5)) FROM seq"
a=$(q "SELECT count(*), sum(crc32(s)), sum(k) FROM t.big")
b=$(q "SELECT sum(crc32(s)) FROM t.big FORCE INDEX(k) WHERE k BETWEEN 1000 AND 40000")
c=$(q "SELECT sum(k) FROM t.big FORCE INDEX(k)")
q "SHUTDOWN"
wait "$SERVER"
SERVER=
echo "$a $b $c" | tr '\t' ' '
