# SPDX-License-Identifier: MIT
#
# The kernel's side of a comparison with memext, sourced by bench/zram-compare/run.sh and
# bench/real-apps/run.sh: swap on /dev/zram0 (lz4, the highest priority) and a memory cgroup
# v1 whose limit is the budget. The caller sets KSWAP_NAME, defines die(), and calls
# kswap_cleanup from its EXIT trap; nothing set up here outlives the script.

ZRAM=/dev/zram0
ZSYS=/sys/block/zram0
CGROOT=/sys/fs/cgroup/memory
CG=$CGROOT/memext-$KSWAP_NAME.$$
ZRAM_ON=0

# Root, cgroup v1, and a zram device nobody uses.
kswap_check() {
	[ "$(id -u)" = 0 ] || die "needs root (swapon, zram, cgroups)"
	[ -f $CGROOT/memory.limit_in_bytes ] || die "no cgroup v1 memory controller at $CGROOT"
	[ -b $ZRAM ] || modprobe zram num_devices=1 2>/dev/null || true
	[ -b $ZRAM ] || die "no $ZRAM"
	grep -q "^$ZRAM " /proc/swaps && die "$ZRAM is in use as swap (see /proc/swaps); not touching it"
	[ "$(cat $ZSYS/initstate)" = 0 ] || die "$ZRAM is set up (initstate 1) by someone else; not touching it"
	grep -qw lz4 $ZSYS/comp_algorithm || die "zram has no lz4: $(cat $ZSYS/comp_algorithm)"
	# Other swap areas stay (they are not ours); zram gets the highest priority.
	OTHER_SWAPS=$(awk 'NR > 1 {print $1}' /proc/swaps | paste -sd' ')
}

# $1: the zram disk size in bytes. Creates the cgroup $CG (no limit yet: the caller sets
# memory.limit_in_bytes per run).
kswap_setup() {
	echo 1 >$ZSYS/reset
	echo lz4 >$ZSYS/comp_algorithm
	echo "$1" >$ZSYS/disksize
	ZRAM_ON=1
	mkswap $ZRAM >/dev/null
	swapon -p 32767 $ZRAM
	mkdir "$CG"
	echo 100 >"$CG/memory.swappiness" 2>/dev/null || true
}

# Kills what is left in the cgroup, removes it, turns the swap off and resets zram.
kswap_cleanup() {
	if [ -d "$CG" ]; then
		for p in $(cat "$CG/cgroup.procs"); do kill -KILL "$p"; done 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$CG" 2>/dev/null && break; sleep 0.2; done
		[ -d "$CG" ] && echo "$KSWAP_NAME: could not remove $CG" >&2
	fi
	if [ "$ZRAM_ON" = 1 ]; then
		swapoff $ZRAM || echo "$KSWAP_NAME: swapoff $ZRAM failed" >&2
		echo 1 >$ZSYS/reset || echo "$KSWAP_NAME: zram reset failed" >&2
		ZRAM_ON=0
	fi
}
