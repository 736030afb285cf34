#!/usr/bin/env bash
# Run a program as root inside a throw-away QEMU guest whose only cgroup hierarchy is cgroup v2,
# as on a current Ubuntu, Fedora or Debian host (this project's users), whatever the host has.
#
#   scripts/v2-guest.sh [--with PATH]... [--env K=V]... [--timeout SEC] [--] BINARY [ARGS...]
#
#   --with PATH    also copy PATH (a file, or a directory with everything below it: symlinks
#                  and device nodes stay what they are) into the guest. Repeatable.
#   --env K=V      set K=V for the program. Repeatable. RUST_BACKTRACE, RUST_LOG,
#                  RUST_TEST_THREADS, RUST_TEST_NOCAPTURE, CI and CARGO_* pass through anyway.
#   --timeout SEC  stop the guest after SEC seconds (default 900, or $CFS_V2GUEST_TIMEOUT).
#
# BINARY, every --with path and the caller's working directory appear in the guest at the same
# absolute paths as here; BINARY and --with files also bring their shared libraries (ldd) and
# the interpreter of a #! script. The program starts in the caller's directory, with stdin
# /dev/null; its stdout and stderr stream to ours (in the guest they are serial ttys in raw
# mode, and carry about 200 KB/s). Exit status: the program's (128+N if a signal N killed it),
# 124 on timeout, 125 if this script or the guest itself failed (the guest's console is then
# printed on stderr). Boot and power-off add about 3.5 s under emulation.
#
# The guest: Debian's kernel booted with cgroup_no_v1=all; cgroup2 at /sys/fs/cgroup (mounted
# like systemd does: nsdelegate, memory_recursiveprot) with every controller enabled in the
# root's cgroup.subtree_control; the program starts in the leaf /test.slice/run.scope; PID 1
# sits in /init.scope. / is an rshared tmpfs on which pivot_root works; /proc, /sys, devtmpfs
# /dev, /dev/pts, /dev/shm, /dev/mqueue are mounted; busybox applets fill /bin, /usr/bin...
# wherever copied files do not. Only the kernel's built-in drivers exist (no modules, no
# network but lo).
#
# Self-test (what CI runs; it runs its in-guest half through this script, see its header):
#   scripts/v2-guest-selftest.sh
# A cargo test binary:
#   scripts/v2-guest.sh target/debug/deps/cfs_support-HASH --test-threads=1
#
# Needs qemu-system-x86_64, a static busybox, cpio and xz; the first run fetches Debian's
# linux-image-amd64 with `apt-get download` (never installed here) into $CFS_V2GUEST_CACHE
# (default /var/tmp/cfs-v2guest). Other knobs: CFS_V2GUEST_MEM (MiB, default 2048),
# CFS_V2GUEST_SMP (default: host CPUs, at most 4), CFS_V2GUEST_ACCEL (kvm or tcg; default kvm
# only when /dev/kvm is usable and the CPU has vmx/svm, as nested setups without them cannot
# run an unmodified kernel under KVM).
set -euo pipefail

HERE=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
CACHE=${CFS_V2GUEST_CACHE:-/var/tmp/cfs-v2guest}
TIMEOUT=${CFS_V2GUEST_TIMEOUT:-900}
MEM=${CFS_V2GUEST_MEM:-2048}
SMP=${CFS_V2GUEST_SMP:-$(n=$(nproc); echo $((n > 4 ? 4 : n)))}
WITH=() ENVS=()

fail() { echo "v2-guest: $*" >&2; exit 125; }
need() { command -v "$1" >/dev/null || fail "$1 not found: apt-get install -y --no-install-recommends $2"; }

while [ $# -gt 0 ]; do
	case $1 in --with | --env | --timeout) [ $# -ge 2 ] || fail "$1 needs a value" ;; esac
	case $1 in
	--with) WITH+=("$2"); shift 2 ;;
	--env) [[ $2 == [A-Za-z_]*=* ]] || fail "--env needs K=V"; ENVS+=("$2"); shift 2 ;;
	--timeout) [[ $2 =~ ^[0-9]+$ ]] || fail "--timeout needs seconds"; TIMEOUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
	--) shift; break ;;
	-*) fail "unknown option $1 (see --help)" ;;
	*) break ;;
	esac
done
if ! [[ $MEM =~ ^[0-9]+$ ]] || [ "$MEM" -lt 256 ]; then fail "CFS_V2GUEST_MEM must be at least 256 (MiB)"; fi
[ $# -ge 1 ] || fail "usage: $0 [--with PATH]... [--env K=V]... [--timeout SEC] [--] BINARY [ARGS...]"

need qemu-system-x86_64 qemu-system-x86
need cpio cpio
need xz xz-utils
BUSYBOX=$(command -v busybox) || fail "busybox not found: apt-get install -y busybox-static"
BUSYBOX=$(readlink -f "$BUSYBOX")
! ldd "$BUSYBOX" >/dev/null 2>&1 || fail "$BUSYBOX is not static: apt-get install -y busybox-static"

# ---- the kernel: Debian's, fetched once, booted as an ELF vmlinux (PVH entry) when it can
# be unpacked, which skips decompressing it at each boot (slow under emulation).
fetch_kernel() {
	local pkg dl z off
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
	if [ -z "$pkg" ] && [ "$(id -u)" = 0 ]; then
		apt-get update -qq >&2 || true
		pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ {print $2; exit}')
	fi
	[ -n "$pkg" ] || fail "apt knows no linux-image-amd64: run apt-get update"
	echo "v2-guest: fetching $pkg into $CACHE (once)" >&2
	dl=$(mktemp -d "$CACHE/fetch.XXXXXX")
	(cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null) || { rm -rf "$dl"; fail "apt-get download $pkg failed"; }
	dpkg-deb --fsys-tarfile "$dl"/*.deb | tar -xC "$dl" --wildcards './boot/vmlinuz-*'
	z=$(echo "$dl"/boot/vmlinuz-*)
	for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$z" | cut -d: -f1); do
		tail -c +$((off + 1)) "$z" | xz -dc --single-stream >"$dl/vmlinux" 2>/dev/null || true
		[ "$(head -c4 "$dl/vmlinux")" = $'\x7fELF' ] && { z=$dl/vmlinux; break; }
	done
	mv "$z" "$CACHE/kernel.tmp" && mv "$CACHE/kernel.tmp" "$CACHE/kernel"
	(cd "$dl" && echo *.deb "${z##*/}") >"$CACHE/kernel.source"
	rm -rf "$dl"
}
mkdir -p "$CACHE"
exec 9>"$CACHE/lock"
flock 9
[ -s "$CACHE/kernel" ] || fetch_kernel
exec 9>&-

# ---- the initramfs: a small base archive (init, busybox, /etc, mount points) followed by an
# archive of host files under their own names. All names are canonical (no symlink on the
# way) and sorted, so every directory comes before what it holds.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/v2-guest.XXXXXX")
QEMU_PID=
cleanup() {
	[ -z "$QEMU_PID" ] || kill "$QEMU_PID" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

LIST=$WORK/files # NUL-separated names relative to /
: >"$LIST"
canon() { # $1 with every symlink resolved except in its last component
	local d
	d=$(readlink -f -- "$(dirname -- "$1")") || return 1
	echo "${d%/}/$(basename -- "$1")"
}
entry() { # list canonical path $1 and the directories above it
	local p=$1
	while [ "$p" != / ]; do printf '%s\0' "${p#/}" >>"$LIST"; p=$(dirname -- "$p"); done
}
reach() { # make path $1 resolve in the guest as here: the entry, and any symlinks on the way
	local p=$1 q='' part t
	local -a parts
	[ "$p" != / ] || return 0
	IFS=/ read -r -a parts <<<"${p#/}"
	for part in "${parts[@]}"; do
		[ -n "$part" ] || continue
		q=$q/$part
		if [ -L "$q" ]; then
			entry "$(canon "$q")"
			t=$(readlink -f -- "$q") && [ -e "$t" ] && reach "$t"
		fi
	done
	[ -L "$p" ] || entry "$(canon "$p")"
}
add() { # $1 and, for a directory, everything below it; for a file, its libraries and #! interpreter
	local p lib interp
	[[ $1 == /* ]] && p=$1 || p=$PWD/$1
	[ -e "$p" ] || fail "no such file or directory: $1"
	case ${p##*/} in . | .. | '') p=$(readlink -f -- "$p") ;; esac
	reach "$p"
	p=$(readlink -f -- "$p")
	if [ -d "$p" ]; then
		find "$p" -mindepth 1 -print0 | sed -z 's|^/||' >>"$LIST"
	elif [ "$(head -c4 -- "$p")" = $'\x7fELF' ]; then
		for lib in $(ldd -- "$p" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
			reach "$lib"
		done
	elif [ "$(head -c2 -- "$p")" = '#!' ]; then
		read -r interp _ < <(head -n1 -- "$p" | cut -c3-)
		if [ -n "$interp" ] && [ -f "$interp" ]; then add "$interp"; fi
	fi
}

PROG=$1
if [[ $PROG != */* ]]; then PROG=$(command -v -- "$1") || fail "$1: command not found"; fi
[[ $PROG == /* ]] || PROG=$PWD/$PROG
shift
add "$PROG"
for w in "${WITH[@]}"; do add "$w"; done
reach "$PWD"
for top in bin sbin lib lib64; do [ ! -L "/$top" ] || reach "/$top"; done # merged /usr

BASE=$WORK/base
mkdir -p "$BASE"/{.cfs-guest,proc,sys,dev,run,root,mnt,tmp,var/tmp,etc,usr/bin,usr/sbin}
chmod 1777 "$BASE/tmp" "$BASE/var/tmp"
for top in bin sbin; do [ -L "/$top" ] || mkdir "$BASE/$top"; done
cp "$BUSYBOX" "$BASE/.cfs-guest/busybox"
cp "$HERE/v2-guest/init" "$BASE/init"
chmod 755 "$BASE/init"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$BASE/etc/passwd"
printf 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n' >"$BASE/etc/group"
printf '127.0.0.1 localhost cfs-guest\n::1 localhost\n' >"$BASE/etc/hosts"

quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }
{
	echo 'export HOME=/root USER=root LOGNAME=root TERM=dumb LANG=C.UTF-8'
	while IFS= read -r -d '' kv; do
		case $kv in
		RUST_BACKTRACE=* | RUST_LOG=* | RUST_TEST_THREADS=* | RUST_TEST_NOCAPTURE=* | CI=* | CARGO_*=*)
			echo "export $(quote "$kv")" ;;
		esac
	done < <(env -0)
	for kv in "${ENVS[@]}"; do echo "export $(quote "$kv")"; done
	echo "cd $(quote "$PWD") || exit 125"
	printf 'exec'
	for a in "$PROG" "$@"; do printf ' %s' "$(quote "$a")"; done
	echo
} >"$BASE/.cfs-guest/run"

{
	(cd "$BASE" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C sort -z | cpio -o0 -H newc -R 0:0 --quiet)
	(cd / && LC_ALL=C sort -zu "$LIST" | cpio -o0 -H newc --quiet)
} >"$WORK/initrd" || fail "cannot build the initramfs"

# ---- boot
ACCEL=${CFS_V2GUEST_ACCEL:-}
if [ -z "$ACCEL" ]; then
	ACCEL=tcg
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then ACCEL=kvm; fi
fi
case $ACCEL in
kvm) CPU=(-accel kvm -cpu host) ;;
tcg) # shellcheck disable=SC2054 # (the commas belong to qemu's options)
	CPU=(-accel tcg,thread=multi -cpu max) ;;
*) fail "CFS_V2GUEST_ACCEL must be kvm or tcg" ;;
esac

# qemu writes the program's output into fifos that cat copies to our stdout and stderr (cat
# writes through our own file descriptions, so a caller's log file is appended, not clobbered).
mkfifo "$WORK/out" "$WORK/err"
cat "$WORK/out" &
OUT_PID=$!
cat "$WORK/err" >&2 &
ERR_PID=$!
set +e
timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -machine pc "${CPU[@]}" -smp "$SMP" -m "$MEM" \
	-nodefaults -no-user-config -display none -no-reboot \
	-kernel "$CACHE/kernel" -initrd "$WORK/initrd" \
	-append "console=ttyS0 quiet panic=-1 rdinit=/init cgroup_no_v1=all init_on_alloc=0" \
	-serial "file:$WORK/console" -serial "file:$WORK/out" -serial "file:$WORK/err" \
	-serial "file:$WORK/status" </dev/null >"$WORK/qemu.log" 2>&1 &
QEMU_PID=$!
wait "$QEMU_PID"
QEMU_RC=$?
QEMU_PID=
# If qemu died before opening a fifo, its cat still waits in open(): a read-write open
# (which never blocks) lets it through to end-of-file.
for f in out err; do exec 8<>"$WORK/$f" 8>&-; done
wait "$OUT_PID" "$ERR_PID"
set -e

RC=$(tr -dc 0-9 <"$WORK/status" 2>/dev/null || true)
[ -z "$RC" ] || exit "$RC"
if [ "$QEMU_RC" = 124 ] || [ "$QEMU_RC" = 137 ]; then
	echo "v2-guest: timed out after ${TIMEOUT}s" >&2
	exit 124
fi
{
	echo "v2-guest: the guest ended without reporting an exit status (qemu exit $QEMU_RC)"
	echo "---- guest console"
	tr -d '\r' <"$WORK/console" 2>/dev/null
	echo "---- qemu"
	cat "$WORK/qemu.log"
} >&2
exit 125
