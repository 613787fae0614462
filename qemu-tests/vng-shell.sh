#!/bin/sh
# Interactive shell in a QEMU guest with virtme-ng, for poking at a kernel by hand
# (e.g. a patched kernel's /proc/vmcore_pfn_lists). Not used by the test suite: a vng boot
# costs ~99 s under TCG (udevadm settle), the suite's own driver (kdumpvm.py) ~30 s a cycle.
#
#   qemu-tests/vng-shell.sh [6.1|6.12|/path/to/bzImage] [-- extra vng args, e.g. --exec CMD]
#
# The host root is the guest's root (read-only, 9p); the repo is writable; crashkernel=256M is
# reserved, so `kexec -p` + `echo c > /proc/sysrq-trigger` work from the shell (see
# reference/qemu-kdump.md section 10.2 for the capture-kernel initrd vng needs on modular kernels).
# TCG by default: KVM hangs on the hosts this project runs on; DUMPFILTER_QEMU_ACCEL=kvm to try.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
vng=$repo/.venv/bin/vng
[ -x "$vng" ] || { echo "vng-shell: $vng missing: run 'make venv'" >&2; exit 1; }
k=${1:-6.1}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
case $k in
6.1) k=/boot/vmlinuz-6.1.0-56-amd64 ;;
6.12) k=/boot/vmlinuz-6.12.117+deb12-amd64 ;;
esac
[ -f "$k" ] || { echo "vng-shell: no kernel image $k" >&2; exit 1; }
PATH=$repo/.venv/bin:$PATH; export PATH  # vng runs virtme-run from PATH
kvm=--disable-kvm
[ "${DUMPFILTER_QEMU_ACCEL:-tcg}" = kvm ] && kvm=
# --force-9p: bookworm's legacy virtiofsd rejects vng's flags (reference/qemu-kdump.md 10.2).
exec "$vng" -r "$k" $kvm --force-9p --memory 1G --cpus 1 --append "crashkernel=256M" \
    --rwdir "$repo" "$@"
