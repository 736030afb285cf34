#!/bin/sh
# Self-test of scripts/v2-guest.sh. CI runs, from the workspace root:
#
#   scripts/v2-guest-selftest.sh
#
# On the host it boots a few guests: one runs this script again inside, as
#   scripts/v2-guest.sh --with scripts/v2-guest-selftest.sh --with DIR \
#       /bin/busybox sh scripts/v2-guest-selftest.sh --in-guest DIR
# (DIR: a busybox root filesystem made here, i.e. symlinks and device nodes), which checks that
# the guest is a pure cgroup v2 host where limits are enforced; the others check that exit
# statuses, signals and timeouts come back to the caller. Ends with "N passed, M failed" and
# exits non-zero if anything failed.
passed=0 failed=0
check() { # check DESCRIPTION COMMAND...: run COMMAND, count and report its success
	what=$1
	shift
	if "$@"; then
		passed=$((passed + 1))
		echo "PASS: $what"
	else
		failed=$((failed + 1))
		echo "FAIL: $what"
	fi
}
summary() {
	echo "v2-guest-selftest: $passed passed, $failed failed"
	[ "$failed" = 0 ]
}

if [ "${1:-}" = --in-guest ]; then
	# ---- inside the guest (busybox sh, busybox applets on PATH)
	rootfs=$2
	cg=/sys/fs/cgroup
	echo "guest: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"

	check "/sys/fs/cgroup is cgroup2 (statfs magic 0x63677270)" \
		test "$(stat -f -c %t $cg)" = 63677270
	check "no cgroup v1 hierarchy is mounted" \
		test -z "$(awk '$3 == "cgroup"' /proc/mounts)"
	mkdir -p /mnt/v1
	check "a cgroup v1 hierarchy cannot be mounted" \
		sh -c '! mount -t cgroup -o pids none /mnt/v1 2>/dev/null'
	echo "guest: root controllers: $(cat $cg/cgroup.controllers)"
	check "every controller is enabled in the root's subtree_control" \
		test "$(cat $cg/cgroup.subtree_control)" = "$(cat $cg/cgroup.controllers)"
	for c in cpu memory pids io; do
		check "controller $c is available" grep -qw $c $cg/cgroup.controllers
	done

	mine=$(sed -n 's/^0:://p' /proc/self/cgroup)
	echo "guest: /proc/self/cgroup: $(cat /proc/self/cgroup)"
	check "the program starts in a non-root cgroup" test -n "$mine" -a "$mine" != /
	check "... which is a leaf" test -z "$(find "$cg$mine" -mindepth 1 -type d)"
	check "... listing this shell" grep -qx $$ "$cg$mine/cgroup.procs"
	check "/proc/self/cgroup has no v1 lines" test "$(wc -l </proc/self/cgroup)" = 1

	# pids.max=5: a shell in the cgroup counts as one, 4 background sleeps fill it up, the 6th
	# process cannot be created (ash stops at the first failed fork).
	mkdir $cg/selftest-pids
	echo 5 >$cg/selftest-pids/pids.max
	sh -c "echo \$\$ >$cg/selftest-pids/cgroup.procs
		for i in 1 2 3 4 5 6 7 8; do sleep 60 & echo started; done" >/tmp/pids.out 2>&1
	echo "guest: pids: $(grep -c started /tmp/pids.out) sleeps started, then: $(grep -v started /tmp/pids.out | head -n1)"
	check "pids.max=5: 4 sleeps + the shell run, the 6th process is refused" \
		test "$(grep -c started /tmp/pids.out)" = 4 -a "$(cat $cg/selftest-pids/pids.current)" = 4
	check "pids.events counts the refused fork" \
		test "$(awk '$1 == "max" {print $2}' $cg/selftest-pids/pids.events)" -ge 1
	echo 1 >$cg/selftest-pids/cgroup.kill
	i=0
	while [ "$(cat $cg/selftest-pids/pids.current)" != 0 ] && [ $i -lt 50 ]; do
		usleep 100000
		i=$((i + 1))
	done
	check "cgroup.kill empties the cgroup and it can be removed" rmdir $cg/selftest-pids

	# memory.max: a 64 MiB buffer in a 32 MiB cgroup is OOM-killed (SIGKILL: status 137)
	mkdir $cg/selftest-mem
	echo 32M >$cg/selftest-mem/memory.max
	sh -c "echo \$\$ >$cg/selftest-mem/cgroup.procs
		exec dd if=/dev/zero of=/dev/null bs=64M count=1" 2>/dev/null
	rc=$?
	echo "guest: memory hog exit status $rc, memory.events: $(tr '\n' ' ' <$cg/selftest-mem/memory.events)"
	check "memory.max=32M: the 64 MiB hog is killed with status 137" test $rc = 137
	check "memory.events counts the OOM kill" \
		test "$(awk '$1 == "oom_kill" {print $2}' $cg/selftest-mem/memory.events)" -ge 1
	echo 128M >$cg/selftest-mem/memory.max
	check "the same hog runs under memory.max=128M" sh -c "echo \$\$ >$cg/selftest-mem/cgroup.procs
		exec dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null"
	rmdir $cg/selftest-mem

	# the rest of the host a container runtime expects
	mounted() { test "$(awk -v d="$1" '$2 == d {t = $3} END {print t}' /proc/mounts)" = "$2"; }
	check "/proc is mounted" mounted /proc proc
	check "/sys is mounted" mounted /sys sysfs
	check "/dev is a devtmpfs" mounted /dev devtmpfs
	check "/dev/pts is mounted" mounted /dev/pts devpts
	check "/dev/shm is mounted" mounted /dev/shm tmpfs
	check "/ is shared, as under systemd" sh -c "awk '\$5 == \"/\"' /proc/self/mountinfo | grep -q shared:"
	check "the working directory is the caller's" test "$(pwd)" = "$V2_SELFTEST_CWD"
	check "--env reaches the program" test "$V2_SELFTEST_ENV" = "a b'c"
	check "stdin is /dev/null" test "$(readlink /proc/self/fd/0)" = /dev/null
	check "the rootfs's absolute busybox symlinks are copied as they are" \
		test "$(readlink "$rootfs/bin/sh")" = /bin/busybox
	check "the rootfs's device nodes are copied" test -c "$rootfs/dev/null"
	check "chroot into the rootfs works" test "$(chroot "$rootfs" /bin/sh -c 'echo ok')" = ok
	out=$(unshare -m -p -f sh -c "
		mount --make-rprivate / && mount --bind $rootfs $rootfs && cd $rootfs &&
		mkdir -p old && pivot_root . old && cd / && umount -l /old && exec /bin/sh -c 'echo \$\$; ls /old'" 2>&1)
	check "unshare + pivot_root into the rootfs works (got: $(echo "$out" | tr '\n' ' '))" test "$out" = 1
	summary
	exit
fi

# ---- on the host
cd "$(dirname -- "$0")/.." || exit 1
guest=scripts/v2-guest.sh
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/v2-selftest-rootfs.XXXXXX") || exit 1
trap 'rm -rf "$rootfs"' EXIT
bb=$(readlink -f "$(command -v busybox)")
mkdir -p "$rootfs/bin" "$rootfs/dev" "$rootfs/proc"
cp "$bb" "$rootfs/bin/busybox"
for applet in sh ls echo cat mount umount; do ln -s /bin/busybox "$rootfs/bin/$applet"; done
mknod -m 666 "$rootfs/dev/null" c 1 3 || exit 1

start=$(date +%s)
V2_SELFTEST_CWD=$PWD
"$guest" --with scripts/v2-guest-selftest.sh --with "$rootfs" \
	--env "V2_SELFTEST_CWD=$PWD" --env "V2_SELFTEST_ENV=a b'c" \
	/bin/busybox sh scripts/v2-guest-selftest.sh --in-guest "$rootfs"
rc=$?
echo "host: in-guest checks exited $rc after $(($(date +%s) - start)) s (boot included)"
check "the in-guest checks pass" test $rc = 0

# a dynamically linked program (the host's /bin/sh) with its libraries
"$guest" /bin/sh -c 'echo "out with spaces"; echo err >&2; exit 3' >/dev/null 2>&1
check "exit status 3 comes back as 3 (dynamically linked /bin/sh)" test $? = 3
out=$("$guest" /bin/busybox sh -c 'printf "%s|" "$@"' sh "a b" "c'd" "" '$HOME' 2>&1)
check "arguments arrive unchanged (got: $out)" test "$out" = "a b|c'd||\$HOME|"
err=$("$guest" /bin/busybox sh -c 'echo to-stderr >&2; echo to-stdout' 2>&1 >/dev/null)
check "stderr streams to our stderr (got: $err)" test "$err" = to-stderr
"$guest" /bin/busybox sh -c 'kill -9 $$' >/dev/null 2>&1
check "a program killed by SIGKILL gives 137" test $? = 137
"$guest" --timeout 10 /bin/busybox sleep 600 >/dev/null 2>&1
check "--timeout gives 124" test $? = 124
summary
