#!/bin/sh
# Install the host packages dumpfilter's tests, demo and kernel builds need (Debian bookworm).
# Idempotent: does nothing when everything is already installed.
set -eu
KVER61=${KVER61:-6.1.0-56-amd64}
KVER612=${KVER612:-6.12.117+deb12-amd64}
PKGS="qemu-system-x86 qemu-utils kexec-tools makedumpfile crash busybox-static
python3-libkdumpfile liblzo2-dev cpio gzip zstd xz-utils rsync bc bison flex libelf-dev libssl-dev
dwarves ccache build-essential time
linux-image-$KVER61-unsigned linux-headers-$KVER61
linux-image-$KVER612-unsigned linux-headers-$KVER612
linux-source-6.1 linux-source-6.12"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "host-setup: installing$missing" >&2
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $missing
