#!/bin/bash
# Debian's kernel source as a git tree in the cache: kernel-patches/debian-tree.sh 6.1|6.12|7.2
#
# The newest linux-source-VERSION in the archive is fetched into the cache (never installed
# on the host, qemu-tests/debkernels.py) and unpacked once into a git tree whose first commit
# is tagged debian-base.  build-kernel.sh builds in this tree and mkseries.py reads the
# pristine files from debian-base, so each source is unpacked once.  When the archive has a
# newer source than the tree was made from, the tree is made again.  Prints the tree's path.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "debian-tree.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: $0 6.1|6.12|7.2"
ver=$1
case "$ver" in 6.1 | 6.12 | 7.2) ;; *) die "unknown version $ver (6.1, 6.12 or 7.2)" ;; esac

cache=${DUMPFILTER_CACHE:-$HOME/.cache/dumpfilter}/kernels
tree=$cache/tree/linux-$ver
mkdir -p "$cache"

tarball=$(python3 "$here/../qemu-tests/debkernels.py" source "$ver") ||
	die "no Debian linux-source-$ver (see the message above)"
want=$(cat "${tarball%.tar.xz}.version" 2>/dev/null || echo unknown)
current() {
	[ "$(cat "$tree/.git/debian-version" 2>/dev/null)" = "$want" ] &&
		git -C "$tree" rev-parse -q --verify debian-base >/dev/null 2>&1
}
# The tree is shared with build-kernel.sh, which holds this lock while it builds; readers of
# debian-base (mkseries.py) need it only when the tree must be made.
if ! current && [ -z "${DEBIAN_TREE_LOCKED:-}" ]; then
	exec 9>"$cache/.build-linux-$ver.lock"
	flock 9
fi
if ! current; then
	echo "debian-tree.sh: unpacking linux-source-$ver $want" >&2
	rm -rf "$tree" && mkdir -p "$tree"
	tar xJf "$tarball" -C "$tree" --strip-components=1
	git -C "$tree" init -q
	git -C "$tree" add -A -f  # Debian's tarball ships a .gitignore ignoring "/*"
	git -C "$tree" -c user.name=dumpfilter -c user.email=dumpfilter@example.org \
		commit -q -m "Debian linux-source-$ver $want"
	git -C "$tree" tag debian-base
	echo "$want" >"$tree/.git/debian-version"
fi
echo "$tree"
