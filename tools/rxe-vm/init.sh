#!/bin/busybox sh
# shellcheck shell=sh
#
# /init of the rxe-vm initramfs (built by tools/rxe-vm/run; see README.md).
#
# Runs as PID 1 under busybox inside the qemu guest. It:
#   1. insmods the kernel modules listed in /modules/order (virtio, 9p,
#      ib_core, rdma_rxe, dummy, ...), in dependency order;
#   2. mounts the host's root read-only (9p tag "host") at /host and the job
#      directory (9p tag "job", writable) at /job;
#   3. brings up lo, creates a dummy netdev d0 and the SoftRoCE device rxe0 on
#      top of it, and waits for its port to become ACTIVE;
#   4. prepares /host as a chroot (proc, sys, devtmpfs, tmpfs at /tmp, /run,
#      /dev/shm, /var/tmp, plus the extra shares listed in /job/config);
#   5. with --hosts N (HOSTS in /job/config): runs hosts.sh chrooted, which
#      sets up N network namespaces with an rxe device each and writes
#      /run/rxe-vm/hosts.env for cmd.sh;
#   6. runs /job/cmd.sh (written by the host: environment, cd, exec COMMAND)
#      chrooted into /host, with stdout on ttyS1 and stderr on ttyS2;
#   7. writes the exit status to /job/status (and a marker on the console)
#      and powers the VM off.
#
# Channels back to the host:
#   ttyS0 (console)  -> markers below + diagnostics; never shown to the user
#                       unless the run fails or --verbose is given.
#   ttyS1 / ttyS2    -> the command's stdout / stderr, byte for byte.
#   /job/status      -> exit status (authoritative; written synchronously
#                       over 9p before poweroff).
# Console markers (parsed by the host):
#   RXE_VM_STAGE=<name>        progress (modules, mount, rxe, chroot, hosts,
#                              run, exited), used for timings and timeout messages
#   RXE_VM_FAIL=<message>      infrastructure failure (one line)
#   RXE_VM_EXIT_STATUS=<n>     the command's exit status
#
# Keep this POSIX sh / busybox ash: nothing from the host is available until
# /host is mounted.

PATH=/bin
export PATH
# Tools from the host root (iproute2's `rdma`) are run via chroot with this PATH.
HOST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
R=/host

/bin/busybox --install -s /bin

stage() { echo "RXE_VM_STAGE=$*"; }

# Power off now. Closing every descriptor on /dev/console first makes the
# kernel drain ttyS0 (the last close of a serial tty waits until its transmit
# buffer is empty), so the final marker line is not lost to `poweroff -f`.
halt_vm() {
    sync
    exec 0<&- 1>&- 2>&-
    poweroff -f
    # poweroff -f does not return; if it somehow does, make PID 1 exit, which
    # panics the kernel; with panic=-1 and qemu -no-reboot the VM ends too.
    exit 1
}

# Report an infrastructure failure (one line, newlines squashed) and stop.
fail() {
    msg=$(printf '%s' "$*" | tr '\n\r' '  ')
    echo "RXE_VM_FAIL=$msg"
    if [ -d /job/. ] && grep -q ' /job ' /proc/mounts 2>/dev/null; then
        printf '%s\n' "$msg" > /job/fail
    fi
    halt_vm
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

# --- 1. kernel modules --------------------------------------------------------
stage modules
while read -r mod; do
    [ -n "$mod" ] || continue
    out=$(insmod "/modules/$mod.ko" 2>&1) || fail "cannot load kernel module $mod: $out"
done < /modules/order

# --- 2. 9p shares -------------------------------------------------------------
stage mount
# msize: bigger 9p messages = fewer round trips through qemu's 9p server.
P9OPTS=trans=virtio,version=9p2000.L,msize=262144
mkdir -p "$R" /job
# cache=loose on the read-only host root: the host tree is treated as a
# snapshot for the duration of the run, which lets the guest cache pages and
# dentries (much faster exec/dlopen under TCG).
mount -t 9p -o "$P9OPTS,ro,cache=loose" host "$R" \
    || fail "cannot mount the host root over virtio-9p (tag host)"
mount -t 9p -o "$P9OPTS" job /job \
    || fail "cannot mount the job directory over virtio-9p (tag job)"
[ -r /job/config ] || fail "job directory has no config file"
# Defines CWD, OUT_TTY, ERR_TTY, MERGE_ERR, TTY_ROWS, TTY_COLS, NSHARES, HOSTS,
# SHARE_<i>_PATH, SHARE_<i>_MODE (values single-quoted by the host).
# shellcheck disable=SC1091
. /job/config

# --- 3. network + SoftRoCE ----------------------------------------------------
stage rxe
# lo is needed for TCP side channels over 127.0.0.1 (perftest handshake).
ip link set lo up || fail "cannot bring up lo"
# A dummy netdev: rxe needs a netdev to bind to; nothing leaves the VM.
{ ip link add d0 type dummy && ip link set d0 up; } \
    || fail "cannot create the dummy netdev d0"
# An IPv4 address gives rxe0 a RoCEv2 IPv4-mapped GID too (for rdma_cm);
# GID index 0 (link-local, from the MAC) exists regardless.
ip addr add 10.77.0.1/24 dev d0 || fail "cannot add an address to d0"

# The `rdma` tool (iproute2) comes from the host root; it only needs netlink,
# but glibc likes /proc, so mount it in the chroot first.
mount -t proc proc "$R/proc" || fail "cannot mount /proc in the chroot"
out=$(chroot "$R" /usr/bin/env -i PATH="$HOST_PATH" rdma link add rxe0 type rxe netdev d0 2>&1) \
    || fail "rdma link add rxe0 failed: $out"
i=0
until grep -q ACTIVE /sys/class/infiniband/rxe0/ports/1/state 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 100 ] || fail "rxe0 did not appear / its port did not become ACTIVE"
    sleep 0.1
done

# --- 4. the chroot ------------------------------------------------------------
stage chroot
# The host root is read-only: give the command the usual writable scratch
# places, and fresh /sys and /dev (devtmpfs -> /dev/infiniband/uverbs0).
mount -t sysfs sysfs "$R/sys" || fail "cannot mount /sys in the chroot"
mount -t devtmpfs devtmpfs "$R/dev" || fail "cannot mount /dev in the chroot"
mkdir -p "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts" || fail "cannot mount /dev/pts"
mount -t tmpfs -o mode=1777 tmpfs "$R/dev/shm" || fail "cannot mount /dev/shm"
mount -t tmpfs -o mode=1777 tmpfs "$R/tmp" || fail "cannot mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs "$R/run" || fail "cannot mount /run"
if [ -d "$R/var/tmp" ]; then
    mount -t tmpfs -o mode=1777 tmpfs "$R/var/tmp" || fail "cannot mount /var/tmp"
fi
[ -e "$R/dev/infiniband/uverbs0" ] || fail "/dev/infiniband/uverbs0 is missing"

# Extra shares (--rw DIR, or the caller's cwd when /tmp etc. would hide it),
# mounted after the tmpfs mounts so that e.g. --rw /tmp/x is visible.
i=0
while [ "$i" -lt "${NSHARES:-0}" ]; do
    spath=''
    smode=''
    eval "spath=\$SHARE_${i}_PATH smode=\$SHARE_${i}_MODE"
    # The mount point exists on the host (the host script made sure) but may
    # be under one of the tmpfs mounts above, so create it.
    mkdir -p "$R$spath" 2>/dev/null
    mount -t 9p -o "$P9OPTS,$smode" "share$i" "$R$spath" \
        || fail "cannot mount share $spath ($smode) inside the VM"
    i=$((i + 1))
done

[ -d "$R$CWD" ] || fail "working directory $CWD is not visible inside the VM (under a tmpfs?)"
mkdir -p "$R/run/rxe-vm"
cp /job/cmd.sh "$R/run/rxe-vm/cmd.sh" || fail "cannot copy the command script"

# --- 5. the hosts (--hosts N) -------------------------------------------------
if [ "${HOSTS:-0}" -gt 0 ]; then
    stage hosts
    cp /job/hosts/* "$R/run/rxe-vm/" || fail "cannot copy the hosts tools"
    out=$(chroot "$R" /usr/bin/env -i PATH="$HOST_PATH" /bin/sh /run/rxe-vm/hosts.sh "$HOSTS" \
        /run/rxe-vm/hosts.env 2>&1) || fail "cannot set up $HOSTS hosts: $out"
fi

# --- 6. run the command -------------------------------------------------------
# shellcheck disable=SC3045 # busybox ash has ulimit -l
ulimit -l unlimited || fail "cannot raise RLIMIT_MEMLOCK"

# The command's stdout/stderr go to ttyS1/ttyS2 in raw mode (no \n -> \r\n).
# When the caller's stream is not a terminal, the command gets a pipe instead
# of the tty (so it does not write colours/progress bars into a file) and a
# cat copies the pipe to the port. Either way, the last close of the port
# waits until the kernel has pushed every byte out to qemu.
out_path=/dev/ttyS1
err_path=/dev/ttyS2
cat_pids=
if [ "$OUT_TTY" != 1 ]; then
    mkfifo /stdout.fifo
    ( stty raw -echo <&1; exec cat /stdout.fifo ) > /dev/ttyS1 &
    cat_pids="$cat_pids $!"
    out_path=/stdout.fifo
fi
# MERGE_ERR=1: the caller's stdout and stderr are the same file (a terminal,
# or 2>&1), so the command gets 2>&1 and their relative order is kept.
if [ "$MERGE_ERR" != 1 ] && [ "$ERR_TTY" != 1 ]; then
    mkfifo /stderr.fifo
    ( stty raw -echo <&1; exec cat /stderr.fifo ) > /dev/ttyS2 &
    cat_pids="$cat_pids $!"
    err_path=/stderr.fifo
fi

stage run
(
    # Terminal mode: set raw mode and the caller's window size while this
    # process holds the port open (the window size is lost on last close).
    size=
    if [ "${TTY_ROWS:-0}" -gt 0 ] && [ "${TTY_COLS:-0}" -gt 0 ]; then
        size="rows $TTY_ROWS cols $TTY_COLS"
    fi
    # shellcheck disable=SC2086
    if [ "$OUT_TTY" = 1 ]; then stty raw -echo $size <&1; fi
    # shellcheck disable=SC2086
    if [ "$ERR_TTY" = 1 ] && [ "$MERGE_ERR" != 1 ]; then stty raw -echo $size <&2; fi
    if [ "$MERGE_ERR" = 1 ]; then exec 2>&1; fi
    exec env -i chroot "$R" /bin/sh /run/rxe-vm/cmd.sh
) < /dev/null > "$out_path" 2> "$err_path"
status=$?
stage exited

# Wait (at most ~2 s) for the copying cats: they end when the last writer
# (the command, or anything it left running in the background) closes the
# pipe. A leftover background process must not keep the VM up forever.
if [ -n "$cat_pids" ]; then
    # shellcheck disable=SC2086
    ( sleep 2; kill $cat_pids ) 2>/dev/null &
    # shellcheck disable=SC2086
    wait $cat_pids
fi

printf '%s\n' "$status" > /job/status
echo "RXE_VM_EXIT_STATUS=$status"
halt_vm
