#!/bin/sh
# PID 1 of both kernels of a dumpfilter kdump cycle (qemu-tests/kdumpvm.py drives it).
#
# Two layouts, one script:
#  - initramfs (stock Debian kernels: virtio/9p are modules): busybox + modules in the
#    initramfs; the host root is mounted read-only on /host and commands run in `chroot /host`.
#  - 9p root (self-built kernels with 9p built in): the host root *is* /, read-only; no chroot.
# Either way the read-write results share is /tmp/work as the commands see it, and the cycle's
# parameters come from /tmp/work/cycle.env (written by the host).
# The same script runs again in the capture kernel: /proc/vmcore exists only there.
# PID 1 must never exit ("Attempted to kill init" would panic, and with a capture kernel loaded
# that makes a dump for the wrong reason): every path ends in `poweroff -f`.

BB=/bin/busybox
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH

off() {
    sync
    echo "STAGE: power-off $*"
    $BB poweroff -f
    sleep 5
    echo c > /proc/sysrq-trigger   # unreachable unless poweroff failed
}

up() { cut -d' ' -f1 /proc/uptime; }

# A writable /tmp is a tmpfs over the host root's /tmp, which would hide a repository (and its
# .venv) that lives under /tmp, as a CI clone may: carry it across with a bind mount parked on
# the (writable) devtmpfs.  $1 is the host root's prefix: "" (9p root) or /host (initramfs).
carry_repo() {
    case "$REPO" in /tmp/*) ;; *) return 0 ;; esac
    mkdir -p /dev/.dumpfilter-repo && mount --bind "$1$REPO" /dev/.dumpfilter-repo ||
        echo "STAGE: error carrying $REPO over /tmp"
}
restore_repo() {
    case "$REPO" in /tmp/*) ;; *) return 0 ;; esac
    mkdir -p "$1$REPO" && mount --bind /dev/.dumpfilter-repo "$1$REPO" ||
        echo "STAGE: error restoring $REPO under /tmp"
}

# Mount our own /proc first: over a 9p root the host's /proc would be visible until then.
mount -t proc proc /proc 2>/dev/null || $BB mount -t proc proc /proc
if [ -e /initramfs-dumpfilter ]; then
    MODE=initramfs
    $BB --install -s /bin
else
    MODE=9proot
fi
mount -t sysfs sys /sys 2>/dev/null
mount -t devtmpfs dev /dev 2>/dev/null
dmesg -n 1 2>/dev/null || $BB dmesg -n 1
echo "STAGE: init start mode=$MODE t=$(up)"

O=trans=virtio,version=9p2000.L,msize=512000
# rootcache=MODE on the kernel command line (here an environment variable): the read-only
# host root mounted with cache=MODE, for timing cycles (kdumpvm.ROOT_CACHE says why).
RO=$O${rootcache:+,cache=$rootcache}
if [ $MODE = initramfs ]; then
    # Dependency order, computed on the host from modules.dep (kdumpvm.initramfs_modules).
    for m in $(cat /modules.order); do
        insmod /lib/modules/$m.ko || echo "STAGE: insmod $m failed"
    done
    mkdir -p /host /work
    # The same tag a 9p-root kernel boots from (kdumpvm.py), so either kind can be the capture.
    mount -t 9p -o ro,$RO /dev/root /host || { echo "STAGE: error mount host root"; off; }
    mount -t 9p -o rw,$O work /work || { echo "STAGE: error mount work"; off; }
    for d in proc sys dev; do mount --bind /$d /host/$d; done
    REPO=$(sed -n 's/^REPO=//p' /work/cycle.env | tr -d "'\"")
    carry_repo /host
    mount -t tmpfs tmp /host/tmp
    restore_repo /host
    mkdir -p /host/tmp/work && mount --bind /work /host/tmp/work
    ROOT=/host
    CHROOT="chroot /host"
else
    # init= is $REPO/qemu-tests/guest/init.sh on the host root
    REPO=$(cd "$(dirname "$0")/../.." && pwd)
    carry_repo ""
    mount -t tmpfs tmp /tmp
    restore_repo ""
    mkdir -p /tmp/work
    mount -t 9p -o rw,$O work /tmp/work || { echo "STAGE: error mount work"; off; }
    ROOT=
    CHROOT=
fi
W=$ROOT/tmp/work
[ -r $W/cycle.env ] || { echo "STAGE: error no cycle.env"; off; }
. $W/cycle.env

if [ -e /proc/vmcore ]; then
    echo "STAGE: capture kernel up t=$(up) vmcore=$(stat -c %s /proc/vmcore)"
    grep -E 'MemTotal|MemFree' /proc/meminfo | tr -s ' ' | tr '\n' ' '; echo
    $CHROOT /bin/sh /tmp/work/capture.sh
    echo "STAGE: capture done rc=$? t=$(up)"
    sync
    off capture
fi

echo "STAGE: first kernel up t=$(up) crash=$(grep -i 'crash kernel' /proc/iomem | tr -d ' ')" \
    "size=$(cat /sys/kernel/kexec_crash_size)"
if [ "$KEXEC" = skip ]; then
    echo "STAGE: kexec skipped (fault injection)"
else
    # shellcheck disable=SC2086
    $CHROOT /usr/sbin/kexec $KEXEC_FLAGS -p "$CAPTURE_KERNEL" $CAPTURE_INITRD_ARG \
        --reuse-cmdline --append="$CAPTURE_APPEND"
    echo "STAGE: kexec rc=$? t=$(up)"
fi
echo "STAGE: kexec state loaded=$(cat /sys/kernel/kexec_crash_loaded)"

# Clear the kernel log (records stay in the ring, clear_seq moves) and mark the spot, so that
# `--dump-dmesg --partial-dmesg` has a boot log to leave out (userspace/tests/test_dmesg.py).
dmesg -C 2>/dev/null || $BB dmesg -c > /dev/null
{ echo "dumpfilter-e2e: kernel log cleared" > /dev/kmsg; } 2>/dev/null

# The workload stays resident (its memory must be mapped at the crash); it creates
# workload.ready on the share when every region is populated.
if [ "$WORKLOAD" = skip ]; then
    : > $W/workload.ready
else
    # WORKLOAD_ARGS is shell-quoted (an argument may hold spaces: workload.py --then CMD)
    eval "set -- $WORKLOAD_ARGS"
    # shellcheck disable=SC2086
    $CHROOT $PYTHON -B $REPO/qemu-tests/guest/workload.py --out /tmp/work "$@" \
        > $W/workload.log 2>&1 &
    WPID=$!
fi
n=0
while [ ! -e $W/workload.ready ]; do
    if ! kill -0 $WPID 2>/dev/null; then
        wait $WPID; echo "STAGE: workload failed rc=$?"; tail -n 5 $W/workload.log; off workload
    fi
    n=$((n + 1)); [ $n -gt $WORKLOAD_WAIT ] && { echo "STAGE: workload timeout"; off workload; }
    sleep 1
done
echo "STAGE: workload ready t=$(up)"
# khugepaged collapses small anon pages into THPs on its own schedule: one collapse between
# the snapshot and the crash frees up to 511 small pages and takes 512 new ones, more than
# qemu-tests/test_kpageflags.py allows for drift.  "never" stops the thread (kthread_stop()
# waits for it, mm/khugepaged.c start_stop_khugepaged()); the THPs made so far stay.
THP=/sys/kernel/mm/transparent_hugepage/enabled
[ -w $THP ] && echo never > $THP
# Proactive compaction (kcompactd, Linux 5.9) migrates pages on its own schedule too.
PRO=/proc/sys/vm/compaction_proactiveness
[ -w $PRO ] && echo 0 > $PRO
# Snapshot page flags as late as possible, with busybox (no Python start) so little changes
# between the snapshot and the crash.
cat /proc/meminfo > $W/meminfo
cat /proc/kpageflags > $W/kpageflags
sync
echo "STAGE: crashing t=$(up)"
echo c > /proc/sysrq-trigger
echo "STAGE: error still alive after sysrq-c"
off crash
