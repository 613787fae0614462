#!/bin/sh
# Install the host tools dumpfilter's tests, demo and kernel builds need (Debian bookworm),
# then fetch Debian's newest stock 6.1 and 6.12 (bookworm) and 7.2 (sid) kernels and
# kdump-tools into the cache for the guests.
#
# Only tools are installed.  Guest kernels, their modules and headers are never installed on
# the host (that would write /boot, run update-initramfs and could change what the machine
# boots), and neither is kdump-tools (its maintainer scripts edit the boot loader's defaults):
# debkernels.py downloads the .debs into the cache and unpacks them there.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
PKGS="qemu-system-x86 qemu-utils kexec-tools makedumpfile crash busybox-static
python3-libkdumpfile python3-dev liblzo2-dev cpio gzip zstd xz-utils rsync bc bison flex libelf-dev libssl-dev
dwarves ccache build-essential time kmod dpkg-dev libgmp-dev libmpfr-dev
libncurses-dev libsnappy-dev libzstd-dev zlib1g-dev texinfo dkms"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "host-setup: installing$missing" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
fi
python3 "$here/debkernels.py" fetch >/dev/null
python3 "$here/debkernels.py" package kdump-tools >/dev/null
