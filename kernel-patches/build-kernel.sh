#!/bin/bash
# Build a patched kernel for the QEMU kdump tests:
#   kernel-patches/build-kernel.sh 6.1|6.12|7.2 [debug]
#
# Debian's newest linux-source-VERSION is fetched and unpacked once into a git tree under
# the cache (debian-tree.sh), the series is checked out on top of it, and the kernel is
# configured as tinyconfig + kdump-guest.config + vmcore-pfn-lists.config (+
# debug-checks.config with "debug": KASAN, UBSAN and lockdep, for the interface tests) and
# built with ccache out of tree.  The
# result is keyed by a hash of the Debian source version, the series and the config
# fragments, so a kernel is rebuilt only when one of them changes:
#
#   $DUMPFILTER_CACHE/kernels/build/linux-VERSION-HASH/{bzImage,vmlinux,config,System.map}
#   $DUMPFILTER_CACHE/kernels/linux-VERSION-patched[-debug] -> build/linux-VERSION-HASH
#
# Prints the output directory on the last line of stdout.  Takes ~10 minutes on 2 cores
# from scratch; much less when only the series changed (ccache, incremental objects).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "build-kernel.sh: $*" >&2; exit 1; }
usage="usage: $0 6.1|6.12|7.2 [debug]"
[ $# -eq 1 ] || [ $# -eq 2 ] || die "$usage"
ver=$1
case "$ver" in 6.1 | 6.12 | 7.2) ;; *) die "unknown version $ver (6.1, 6.12 or 7.2)" ;; esac
variant=
case "${2-}" in "") ;; debug) variant=-debug ;; *) die "$usage" ;; esac
cache=${DUMPFILTER_CACHE:-$HOME/.cache/dumpfilter}/kernels
# Each configuration keeps its own objects, so switching between them rebuilds nothing.
obj=$cache/obj/linux-$ver$variant
fragments=("$here/kdump-guest.config" "$here/vmcore-pfn-lists.config")
[ -z "$variant" ] || fragments+=("$here/debug-checks.config")
link=$cache/linux-$ver-patched$variant

# One build per version at a time (the tree and object directory are shared); a second
# caller waits, then finds the result complete.
mkdir -p "$cache"
exec 9>"$cache/.build-linux-$ver.lock"
flock 9

# The pristine Debian tree (tag debian-base) of the newest source, unpacked once.
tree=$(DEBIAN_TREE_LOCKED=1 "$here/debian-tree.sh" "$ver")
source_version=$(cat "$tree/.git/debian-version")
hash=$( (echo "$source_version" && cat "$here/v$ver"/[0-9][0-9][0-9][1-9]-*.patch "${fragments[@]}") |
	sha256sum | cut -c1-16)
out=$cache/build/linux-$ver-$hash

if [ -f "$out/.complete" ]; then
	ln -sfn "$out" "$link"
	echo "build-kernel.sh: linux-$ver$variant is up to date (source $source_version, key $hash)" >&2
	echo "$out"
	exit 0
fi

# The series is committed from a scratch index (one commit per patch, on debian-base) and
# checked out over whatever the tree holds: only files that differ from the last build's get
# new times, so make recompiles only what depends on them (a reset to debian-base and a new
# `git am` would touch every patched header, and with it most of the kernel).
git -C "$tree" am --abort >/dev/null 2>&1 || true
index=$(mktemp)
trap 'rm -f "$index"' EXIT
export GIT_AUTHOR_NAME=dumpfilter GIT_AUTHOR_EMAIL=dumpfilter@example.org
export GIT_COMMITTER_NAME=dumpfilter GIT_COMMITTER_EMAIL=dumpfilter@example.org
commit=$(git -C "$tree" rev-parse debian-base)
GIT_INDEX_FILE=$index git -C "$tree" read-tree debian-base
for patch in "$here/v$ver"/[0-9][0-9][0-9][1-9]-*.patch; do
	GIT_INDEX_FILE=$index git -C "$tree" apply --cached "$patch" ||
		die "$(basename "$patch") does not apply to linux-source-$ver $source_version"
	commit=$(sed -n 's/^Subject: \[PATCH[^]]*\] //p' "$patch" | head -n1 |
		git -C "$tree" commit-tree "$(GIT_INDEX_FILE=$index git -C "$tree" write-tree)" \
			-p "$commit")
done
git -C "$tree" checkout -q -f --detach "$commit"
git -C "$tree" clean -q -fd
echo "build-kernel.sh: linux-$ver at the series ($(git -C "$tree" rev-list --count \
	debian-base..HEAD) patches)" >&2

mkdir -p "$obj" "$cache/ccache"
export CCACHE_DIR=$cache/ccache
make=(make -C "$tree" O="$obj" CC="ccache gcc" HOSTCC="ccache gcc" -j"$(nproc)")
"${make[@]}" -s tinyconfig >&2
"$tree/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "${fragments[@]}" >/dev/null
"${make[@]}" -s olddefconfig >&2
for opt in PROC_VMCORE_PFN_LISTS ${variant:+KASAN UBSAN PROVE_LOCKING}; do
	grep -qx "CONFIG_$opt=y" "$obj/.config" || die "CONFIG_$opt did not survive olddefconfig"
done
missing=$(grep -h '^CONFIG_.*=y' "${fragments[@]}" | while read -r l; do
	grep -qx "$l" "$obj/.config" || echo "${l%=y}"
done | tr '\n' ' ')
[ -z "$missing" ] || echo "build-kernel.sh: note: not set after olddefconfig: $missing" >&2

start=$(date +%s)
"${make[@]}" bzImage vmlinux >&2
mkdir -p "$out.tmp"
cp "$obj/arch/x86/boot/bzImage" "$obj/vmlinux" "$obj/System.map" "$out.tmp/"
cp "$obj/.config" "$out.tmp/config"
git -C "$tree" log --oneline debian-base..HEAD >"$out.tmp/series.txt"
echo "$(($(date +%s) - start)) s build, source $source_version, key $hash" >"$out.tmp/.complete"
rm -rf "$out" && mv "$out.tmp" "$out"
ln -sfn "$out" "$link"
echo "build-kernel.sh: built $out in $(($(date +%s) - start)) s" >&2
echo "$out"
