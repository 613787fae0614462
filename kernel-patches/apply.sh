#!/bin/bash
# Apply the right dumpfilter series to a Linux source tree: kernel-patches/apply.sh TREE
#
# The series is chosen from the tree's own Makefile (VERSION.PATCHLEVEL); trees other than
# 6.1, 6.12 and 7.2 are refused.  A git tree gets `git am` (one commit per patch); a plain
# unpacked tree gets `git apply`.  Every patch is checked before anything is changed, and
# a tree that already carries the series is left alone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "apply.sh: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 TREE"
tree=$(cd "$1" 2>/dev/null && pwd) || die "$1: no such directory"
[ -f "$tree/Makefile" ] && [ -f "$tree/fs/proc/vmcore.c" ] || die "$tree: not a Linux source tree"

mk() { sed -n "s/^$1 *= *//p" "$tree/Makefile" | head -n1; }
version=$(mk VERSION).$(mk PATCHLEVEL)
sublevel=$(mk SUBLEVEL)
case "$version" in
6.1) tested=192 ;;
6.12) tested=118 ;;
7.2) tested=13 ;;
*) die "$tree is Linux $version.$sublevel; series exist for 6.1, 6.12 and 7.2 only" ;;
esac
# The patches, not the cover letter (0000-cover-letter.patch).
series=("$here/v$version"/[0-9][0-9][0-9][1-9]-*.patch)
[ -e "${series[0]}" ] || die "no patches in $here/v$version"
[ "$sublevel" = "$tested" ] ||
	echo "apply.sh: note: series tested on $version.$tested, tree is $version.$sublevel" >&2

cd "$tree"
if [ -f fs/proc/vmcore_pfn_lists.c ]; then
	if git apply --reverse --check "${series[@]}" 2>/dev/null; then
		echo "apply.sh: $tree already carries the $version series"
		exit 0
	fi
	die "$tree has fs/proc/vmcore_pfn_lists.c but not this series' version of it"
fi
git apply --check "${series[@]}" || die "the $version series does not apply to $tree"
if git -C "$tree" rev-parse --show-toplevel 2>/dev/null | grep -qx "$tree"; then
	git am -q "${series[@]}"
else
	git apply "${series[@]}"
fi
echo "apply.sh: applied ${#series[@]} patches (v$version) to $tree"
